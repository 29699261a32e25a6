#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/corpus/<target>/ (committed; rerun to regenerate).

Real torrents come from mktorrent when it is installed (they are kept as committed files
otherwise); everything else is built here by hand: bencode, hand-made torrents with BEP 47
attributes and UTF-8 paths, tracker responses (compact, dictionary, peers6, failure,
chunked, interim 100, close-delimited) and peer wire streams with every message type.

The `session` target's input is structured (`arbitrary`), so its seeds are not written
here: fuzz/run.sh keeps a minimised set of what the fuzzer found in corpus/session/.
"""

import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    raise TypeError(v)


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# Streaming targets: a split header first (see fuzz/src/lib.rs). `splits` cuts the stream.
def split_header(lens=()):
    return bytes([len(lens)]) + b"".join(struct.pack(">H", n) for n in lens)


def content(n, seed):
    out = bytearray()
    x = seed
    while len(out) < n:
        x = hashlib.sha1(x.to_bytes(8, "big")).digest()
        out += x
        seed += 1
        x = seed
    return bytes(out[:n])


def pieces_of(data, piece_len):
    return b"".join(
        hashlib.sha1(data[i : i + piece_len]).digest() for i in range(0, len(data), piece_len)
    ) or b""


# ---- torrents ---------------------------------------------------------------------------

def hand_torrents():
    out = {}
    data = content(40_000, 1)
    out["single.torrent"] = bencode({
        "announce": "http://tracker.test/announce",
        "info": {"name": "file.bin", "length": len(data), "piece length": 16384,
                 "pieces": pieces_of(data, 16384)},
    })
    files = [(["dir", "a.txt"], 1000), (["dir", "sub", "b.bin"], 70_000), (["empty"], 0),
             (["c"], 17)]
    total = sum(n for _, n in files)
    data = content(total, 2)
    out["multi.torrent"] = bencode({
        "announce": "http://tracker.test/announce",
        "announce-list": [["http://a.test/announce", "udp://b.test:80"], ["http://c.test/x"]],
        "comment": "multi-file seed", "created by": "make_seeds.py", "creation date": 1700000000,
        "info": {"name": "multi", "piece length": 32768, "pieces": pieces_of(data, 32768),
                 "private": 1,
                 "files": [{"length": n, "path": p} for p, n in files]},
    })
    # BEP 47: padding files, executable and symlink attributes.
    files = [
        {"length": 1000, "path": ["a"], "attr": "x"},
        {"length": 15384, "path": [".pad", "15384"], "attr": "p"},
        {"length": 20000, "path": ["b"]},
        {"path": ["link"], "attr": "l", "symlink path": ["a"]},
    ]
    data = content(36384, 3)
    out["bep47.torrent"] = bencode({
        "info": {"name": "padded", "piece length": 16384, "pieces": pieces_of(data, 16384),
                 "files": files},
    })
    # UTF-8 names and path.utf-8 keys.
    data = content(5, 4)
    out["utf8.torrent"] = bencode({
        "info": {"name": "na\xefve", "name.utf-8": "na\u00efve \u2603", "length": 5,
                 "piece length": 16384, "pieces": pieces_of(data, 16384)},
    })
    files = [{"length": 3, "path": ["x"], "path.utf-8": ["\u00e9t\u00e9"]},
             {"length": 4, "path": ["y"]}]
    out["utf8-paths.torrent"] = bencode({
        "info": {"name": "u", "piece length": 16384, "pieces": pieces_of(content(7, 5), 16384),
                 "files": files},
    })
    # Unsafe paths and other rejects, so the fuzzer starts next to the checks.
    bad = {
        "dotdot": [{"length": 1, "path": ["..", "etc"]}],
        "slash": [{"length": 1, "path": ["a/b"]}],
        "backslash": [{"length": 1, "path": ["a\\b"]}],
        "drive": [{"length": 1, "path": ["C:x"]}],
        "empty-component": [{"length": 1, "path": [""]}],
        "duplicate": [{"length": 1, "path": ["a"]}, {"length": 1, "path": ["a"]}],
        "file-and-dir": [{"length": 1, "path": ["a"]}, {"length": 1, "path": ["a", "b"]}],
    }
    for name, files in bad.items():
        total = sum(f["length"] for f in files)
        out[f"bad-{name}.torrent"] = bencode({
            "info": {"name": "t", "piece length": 16384,
                     "pieces": pieces_of(content(total, 6), 16384), "files": files},
        })
    out["bad-name.torrent"] = bencode({
        "info": {"name": "..", "length": 1, "piece length": 16384,
                 "pieces": pieces_of(b"x", 16384)},
    })
    return out


def mktorrent_torrents():
    if shutil.which("mktorrent") is None:
        print("mktorrent not found: keeping the committed mktorrent seeds", file=sys.stderr)
        return {}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        single = os.path.join(tmp, "one.bin")
        with open(single, "wb") as f:
            f.write(content(50_000, 7))
        tree = os.path.join(tmp, "tree")
        os.makedirs(os.path.join(tree, "sub", "deeper"))
        for rel, n, seed in [("a.txt", 123, 8), ("sub/b.bin", 40_000, 9),
                             ("sub/deeper/c", 1, 10), ("zero", 0, 11)]:
            with open(os.path.join(tree, rel), "wb") as f:
                f.write(content(n, seed))
        runs = {
            "mktorrent-single.torrent": ["-a", "http://tracker.test/announce", "-l", "15", single],
            "mktorrent-multi.torrent": ["-a", "http://a.test/announce,http://b.test/announce",
                                        "-a", "http://c.test/announce", "-c", "a comment",
                                        "-l", "15", tree],
            "mktorrent-private.torrent": ["-a", "http://tracker.test/announce", "-p",
                                          "-s", "source", "-w", "http://web.test/seed",
                                          "-l", "16", tree],
        }
        for name, args in runs.items():
            path = os.path.join(tmp, name)
            subprocess.run(["mktorrent", "-d", "-o", path, *args], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(path, "rb") as f:
                out[name] = f.read()
    return out


# ---- tracker responses ------------------------------------------------------------------

def announce_bodies():
    compact = bytes([10, 0, 0, 1, 0x1A, 0xE1, 10, 0, 0, 2, 0x1A, 0xE2, 10, 0, 0, 1, 0x1A, 0xE1,
                     0, 0, 0, 0, 0, 80, 1, 2, 3, 4, 0, 0])
    v6 = bytes(15) + b"\x01" + b"\x1a\xe1" + bytes.fromhex("20010db8000000000000000000000001") + b"\x00\x50"
    return {
        "compact": bencode({"interval": 1800, "min interval": 60, "complete": 5,
                            "incomplete": 3, "peers": compact}),
        "dict": bencode({"interval": 900, "peers": [
            {"ip": "192.0.2.1", "port": 6881, "peer id": b"-XX0001-abcdefghijkl"},
            {"ip": "2001:db8::2", "port": 51413},
            {"ip": "tracker.test", "port": 1},
            {"ip": "192.0.2.1", "port": 0},
        ]}),
        "peers6": bencode({"interval": 60, "peers": b"", "peers6": v6,
                           "tracker id": "abc", "warning message": "be nice"}),
        "failure": bencode({"failure reason": "torrent not registered"}),
        "failure-int": bencode({"failure reason": 3}),
        "bad-compact": bencode({"interval": 1, "peers": b"12345"}),
        "negative": bencode({"interval": -1, "complete": -5, "peers": []}),
    }


def http_responses(bodies):
    out = {}
    for name, body in bodies.items():
        out[f"length-{name}"] = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body)
    body = bodies["compact"]
    half = len(body) // 2
    out["chunked"] = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"%x;ext=1\r\n" % half + body[:half] + b"\r\n"
                      + b"%X\r\n" % (len(body) - half) + body[half:] + b"\r\n"
                      + b"0\r\nX-Trailer: yes\r\n\r\n")
    out["continue-then-ok"] = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
                               + out["length-failure"])
    out["until-close"] = b"HTTP/1.0 200 OK\r\nServer: t\r\n\r\n" + bodies["dict"]
    out["lf-only"] = b"\n\nHTTP/1.1 200 OK\nContent-Length: 2\n\nle"
    out["not-found"] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
    out["no-content"] = b"HTTP/1.1 204 No Content\r\n\r\n"
    out["gzip"] = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx"
    out["switching"] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"
    out["both-framings"] = (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"3\r\nabc\r\n0\r\n\r\n")
    return out


# ---- peer wire --------------------------------------------------------------------------

def frame(msg_id, payload=b""):
    return struct.pack(">IB", len(payload) + 1, msg_id) + payload


def wire_streams():
    handshake = (b"\x13BitTorrent protocol" + bytes([0, 0, 0, 0, 0, 0x10, 0, 0x05])
                 + bytes(range(20)) + b"-TS0100-abcdefghijkl")
    req = struct.pack(">III", 1, 16384, 16384)
    every = b"".join([
        struct.pack(">I", 0),                           # keep-alive
        frame(5, b"\xff\xf0"),                          # bitfield (12 pieces)
        frame(0), frame(1), frame(2), frame(3),         # choke .. not interested
        frame(4, struct.pack(">I", 7)),                 # have
        frame(6, req),                                  # request
        frame(7, struct.pack(">II", 1, 0) + content(64, 12)),  # piece
        frame(8, req),                                  # cancel
        frame(9, struct.pack(">H", 6881)),              # port
        frame(13, struct.pack(">I", 2)),                # suggest
        frame(14), frame(15),                           # have all, have none
        frame(16, req),                                 # reject
        frame(17, struct.pack(">I", 3)),                # allowed fast
        frame(20, b"\x00" + bencode({"m": {"ut_metadata": 1}})),  # extended handshake
        frame(99, b"unknown payload"),                  # unknown id
    ])
    # [flags][num_pieces u16] then the split header, then the stream.
    h_np = lambda flags, n=12: bytes([flags]) + struct.pack(">H", n)
    return {
        "handshake-then-all": h_np(3) + split_header() + handshake + every,
        "handshake-split": h_np(1) + split_header([1, 19, 8, 20, 20, 3, 2]) + handshake + every,
        "messages-only": h_np(2) + split_header() + every,
        "messages-split": h_np(0) + split_header([3, 5, 1, 13, 4, 70]) + every,
        "bad-handshake": h_np(1) + split_header() + b"\x13BitTorrent protocoX" + bytes(48),
        "too-long": h_np(0) + split_header() + struct.pack(">I", 1 << 25) + b"\x07",
        "bad-length": h_np(0) + split_header() + struct.pack(">IB", 2, 1) + b"\x00",
        "bitfield-too-long": h_np(2, 8) + split_header() + frame(5, b"\xff\xff\xff"),
        "piece-too-short": h_np(0) + split_header() + frame(7, b"\x00\x00\x00"),
        "big-piece-split": h_np(0) + split_header([9, 100, 5000, 0, 1])
        + frame(7, struct.pack(">II", 0, 0) + content(16384, 13)),
    }


def krpc_messages():
    """DHT datagrams (BEP 5 with the keys of BEP 32, 42 and 43)."""
    nid = b"abcdefghij0123456789"
    ih = b"mnopqrstuvwxyz123456"
    node4 = nid + bytes([1, 2, 3, 4]) + struct.pack(">H", 6881)
    node6 = nid + bytes(15) + b"\x01" + struct.pack(">H", 6881)
    return {
        "ping": {"t": "aa", "y": "q", "q": "ping", "a": {"id": nid}},
        "find_node": {"t": "aa", "y": "q", "q": "find_node",
                      "a": {"id": nid, "target": ih, "want": ["n4", "n6"]}},
        "get_peers": {"t": "aa", "y": "q", "q": "get_peers", "a": {"id": nid, "info_hash": ih},
                      "ro": 1, "v": "TS\x00\x01"},
        "announce_peer": {"t": "aa", "y": "q", "q": "announce_peer",
                          "a": {"id": nid, "info_hash": ih, "port": 6881, "implied_port": 1,
                                "token": "aoeusnth"}},
        "unknown": {"t": "aa", "y": "q", "q": "get", "a": {"id": nid, "target": ih}},
        "reply-nodes": {"t": "aa", "y": "r", "ip": bytes([9, 9, 9, 9, 0x1a, 0xe1]),
                        "r": {"id": nid, "nodes": node4 * 8, "nodes6": node6 * 2}},
        "reply-values": {"t": "aa", "y": "r",
                         "r": {"id": nid, "token": "aoeusnth",
                               "values": [bytes([5, 6, 7, 8, 0, 80]), bytes(16) + b"\x00\x50"]}},
        "error": {"t": "aa", "y": "e", "e": [201, "A Generic Error Ocurred"]},
    }


def utp_header(ptype, ext, conn_id, ts, ts_diff, wnd, seq, ack):
    return struct.pack(">BBHIIIHH", (ptype << 4) | 1, ext, conn_id, ts, ts_diff, wnd, seq, ack)


def utp_packets():
    """BEP 29 packets as libtorrent and Tessera send them, and broken ones."""
    return {
        "syn": utp_header(4, 0, 0x1234, 1000000, 0, 0, 0xfffe, 0),
        "state": utp_header(2, 0, 0x1234, 1000250, 250, 1 << 20, 777, 0xfffe),
        "data": utp_header(0, 0, 0x1235, 1000500, 240, 1 << 20, 0xffff, 776) + content(1380, 9),
        "fin": utp_header(1, 0, 0x1235, 1000600, 230, 1 << 20, 0, 776),
        "reset": utp_header(3, 0, 0x1234, 1000700, 0, 0, 4242, 0),
        # ST_STATE with a selective ACK: packets ack+2 and ack+4 and ack+33 arrived.
        "state-sack": utp_header(2, 1, 0x1234, 1000800, 99, 900000, 778, 3)
        + bytes([0, 4, 0b00000101, 0, 0, 0x80]),
        # libtorrent's close reason (3) then a 1-byte selective ACK, then payload.
        "data-close-reason-sack": utp_header(0, 3, 0x1235, 1000900, 77, 65536, 1, 2)
        + bytes([1, 4, 0, 0, 0, 3]) + bytes([0, 1, 0xff]) + b"payload",
        "chain-overrun": utp_header(2, 1, 1, 2, 3, 4, 5, 6) + bytes([0, 200, 1, 2]),
        "chain-long": utp_header(2, 9, 1, 2, 3, 4, 5, 6) + bytes([9, 0] * 20),
        "version-2": bytes([0x42]) + utp_header(0, 0, 1, 2, 3, 4, 5, 6)[1:],
        "type-5": bytes([0x51]) + utp_header(0, 0, 1, 2, 3, 4, 5, 6)[1:],
        "short": utp_header(2, 0, 1, 2, 3, 4, 5, 6)[:19],
    }


def main():
    for name, data in utp_packets().items():
        write("utp_packet", name, data)
    # dht_node reads a structured scenario (arbitrary): any bytes are one; a few fixed
    # pseudo-random ones of different lengths give the corpus replay something to run.
    for i, n in enumerate([64, 512, 4096]):
        rng = random.Random(i)
        write("dht_node", f"random-{n}", bytes(rng.randrange(256) for _ in range(n)))
    for target in ["bencode", "metainfo", "wire", "http_response", "announce", "extension",
                   "mse_responder", "fast", "krpc"]:
        d = os.path.join(ROOT, target)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if not f.startswith("mktorrent-") or shutil.which("mktorrent") is not None:
                os.remove(os.path.join(d, f))

    torrents = {**hand_torrents(), **mktorrent_torrents()}
    for name, data in torrents.items():
        write("metainfo", name, data)
    bodies = announce_bodies()
    for name, body in bodies.items():
        write("announce", name, body)
    # A first byte below 0x40 is the peer limit (see the target).
    write("announce", "limit-1", bytes([1]) + bodies["compact"])
    for name, msg in krpc_messages().items():
        write("krpc", name, bencode(msg))
        write("bencode", "krpc-" + name, bencode(msg))
    write("krpc", "bad-port0", bencode({"t": "aa", "y": "q", "q": "announce_peer",
                                       "a": {"id": b"abcdefghij0123456789",
                                             "info_hash": b"mnopqrstuvwxyz123456",
                                             "port": 0, "token": "x"}}))
    # bencode: torrents, bodies and a few shapes of their own.
    for name, data in {**torrents, **{f"{k}.announce": v for k, v in bodies.items()}}.items():
        write("bencode", name, data)
    for name, data in {
        "ints": b"li0ei-1ei9223372036854775807ei-9223372036854775808ee",
        "nested": b"l" * 40 + b"e" * 40,
        "dict": bencode({"": b"", "a": [1, {"b": b"\x00\xff"}], "zz": {}}),
        "unsorted": b"d1:bi1e1:ai2ee",
        "leading-zero": b"i01e",
        "minus-zero": b"i-0e",
        "overflow": b"i9223372036854775808e",
        "trailing": b"i1ei2e",
    }.items():
        write("bencode", name, data)
    for name, data in http_responses(bodies).items():
        write("http_response", name, bytes([3]) + split_header() + data)
    chunked = http_responses(bodies)["chunked"]
    write("http_response", "chunked-split",
          bytes([4]) + split_header([10, 30, 2, 1, 1, 7]) + chunked)
    for name, data in wire_streams().items():
        write("wire", name, data)
    for name, data in {
        "tessera": bencode({"m": {}, "p": 6881, "reqq": 500, "v": "Tessera/0.1"}),
        "libtorrent": bencode({"m": {"ut_metadata": 2, "ut_pex": 1}, "metadata_size": 31235,
                               "reqq": 250, "v": "libTorrent 2.0", "yourip": b"\x7f\x00\x00\x01"}),
        "out-of-range": bencode({"m": {}, "p": 70000, "reqq": -1, "v": b"\xff\xfe"}),
        "zero": bencode({"p": 0, "reqq": 0}),
        "not-a-dict": bencode([1, 2]),
    }.items():
        write("extension", name, data)
    for name, data in mse_responder_seeds().items():
        write("mse_responder", name, data)
    for name, data in fast_seeds().items():
        write("fast", name, data)


# ---- message stream encryption ------------------------------------------------------------

def mse_responder_seeds():
    """Raw mode (first byte even): [0][policy][split header][stream]. Crafted mode (odd): the
    fields of a hand-made initiator, see the target; the target does the cryptography."""
    hs = (b"\x13BitTorrent protocol" + bytes(8) + bytes(range(20)) + b"-TS0100-abcdefghijkl")
    seeds = {
        "raw-plaintext": bytes([0, 0]) + split_header([1, 5]) + hs + frame(2),
        "raw-plaintext-required": bytes([0, 1]) + split_header() + hs,
        "raw-garbage": bytes([0, 0]) + split_header([96, 100]) + content(700, 21),
        "raw-ya-only": bytes([0, 1]) + split_header() + content(96, 22),
        "raw-zero-ya": bytes([0, 0]) + split_header() + bytes(96),
    }

    def crafted(policy, pad_a, pad_c, provide, ia, trail=b"", flags=0, vc_xor=bytes(8),
                splits=(), flip=None):
        out = bytes([1, policy, flags]) + struct.pack(">HHI", pad_a, pad_c, provide)
        out += vc_xor + bytes([len(ia)]) + struct.pack(">H", len(trail))
        if flags & 2:
            out += struct.pack(">HB", *flip)
        return out + split_header(splits) + ia + trail

    seeds.update({
        "prefer-rc4": crafted(0, 0, 0, 3, hs, frame(2)),
        # Cut right after the initial payload: the trailing bytes arrive after done and are
        # decrypted by the caller's cipher (96 + 40 + 16 + 68 bytes of handshake).
        "rc4-trail-after-done": crafted(0, 0, 0, 3, hs, content(200, 23), splits=[220, 50]),
        "require-rc4-padded": crafted(1, 512, 512, 2, hs, frame(2), splits=[97, 300, 1, 250]),
        "prefer-plaintext-only": crafted(0, 17, 0, 1, hs, frame(2)),
        "require-plaintext-only": crafted(1, 17, 0, 1, hs),
        "no-ia": crafted(1, 3, 0, 2, b"", hs),
        "pad-a-too-long": crafted(0, 513, 0, 3, hs, bytes(600)),
        "pad-c-too-long": crafted(0, 0, 513, 3, hs),
        "wrong-vc": crafted(0, 0, 0, 3, hs, vc_xor=bytes(7) + b"\x01"),
        "unknown-torrent": crafted(0, 0, 0, 3, hs, flags=1),
        "disabled": crafted(2, 0, 0, 3, hs),
        "flipped": crafted(0, 8, 0, 3, hs, flags=2, flip=(130, 0x40)),
    })
    return seeds


# ---- fast extension -----------------------------------------------------------------------

def fast_seeds():
    """[flags][num_pieces u16][ip 4][k u8][split header][frames]."""
    req = lambda piece: struct.pack(">III", piece, 16384, 16384)
    fast_msgs = b"".join([
        frame(14), frame(15),                          # have all, have none
        frame(13, struct.pack(">I", 2)),               # suggest
        frame(16, req(3)),                             # reject
        frame(17, struct.pack(">I", 4)),               # allowed fast
        frame(17, struct.pack(">I", 1313)),            # allowed fast, out of range
        frame(16, req(0xFFFFFFFF)),                    # reject, out of range
    ])
    head = lambda flags, n, k: bytes([flags]) + struct.pack(">H", n) + bytes([80, 4, 4, 200, k])
    return {
        "negotiated": head(1, 1313, 9) + split_header() + fast_msgs,
        "not-negotiated": head(0, 1313, 7) + split_header([5, 9, 3]) + fast_msgs,
        "few-pieces": head(1, 3, 40) + split_header([1, 1, 1]) + fast_msgs,
        "no-pieces": head(1, 0, 10) + split_header() + fast_msgs,
        "bad-lengths": head(1, 100, 10) + split_header()
        + struct.pack(">IB", 2, 14) + b"\x00" + struct.pack(">IB", 4, 17) + b"abc",
    }


# ---- UDP trackers, magnet links, ut_metadata, ut_pex -----------------------------------

def udp_answers():
    """BEP 15 datagrams, tracker to client and client to tracker."""
    peers4 = b"".join(bytes([10, 0, 0, i]) + struct.pack(">H", 6881) for i in range(1, 4))
    peers6 = bytes(15) + b"\x01" + struct.pack(">H", 51413)
    connect = struct.pack(">IIQ", 0, 1, 0x0123456789ABCDEF)
    announce = struct.pack(">IIIII", 1, 2, 1800, 3, 4) + peers4
    return {
        # [flags] [cut] then the datagrams; cut 16 feeds a connect answer then the rest.
        "connect-announce": bytes([100, 16]) + connect + announce,
        "connect-announce6": bytes([101, 16]) + connect + struct.pack(">IIIII", 1, 2, 60, 0, 1) + peers6,
        "connect-scrape": bytes([20, 16]) + connect + struct.pack(">II", 2, 3) + struct.pack(">III", 5, 6, 7),
        "error": bytes([20, 255]) + struct.pack(">II", 3, 1) + b"torrent not registered\0",
        "connect-error": bytes([20, 16]) + connect + struct.pack(">II", 3, 1) + b"go away",
        "short-peers": bytes([20, 16]) + connect + announce[:-1],
        "unknown-action": bytes([20, 8]) + struct.pack(">II", 9, 1),
        "connect-request": bytes([0, 255]) + struct.pack(">QII", 0x41727101980, 0, 7),
        "announce-request": bytes([0, 255]) + struct.pack(">QII", 5, 1, 7) + bytes(range(40))
        + struct.pack(">qqqIIIiH", 1, 2, 3, 2, 0, 9, -1, 6881) + b"\x02\x09/announce\x01\x00",
        "scrape-request": bytes([0, 255]) + struct.pack(">QII", 5, 2, 7) + bytes(40),
    }


def magnet_links():
    h = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
    b32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK"
    return {
        "full": f"magnet:?xt=urn:btih:{h}&dn=Some+Name%20%C3%A9&tr=udp%3A%2F%2Ft.example%3A6969"
                f"%2Fannounce&tr=http://t.example/a&x.pe=10.0.0.1:6881&x.pe=%5B::1%5D:1"
                f"&x.pe=peer.example:80&so=0,2,4-6",
        "base32": f"magnet:?xt=urn:btih:{b32}",
        "hybrid": f"magnet:?xt=urn:btih:{h}&xt=urn:btmh:1220{'ab' * 32}",
        "v2-only": f"magnet:?xt=urn:btmh:1220{'ab' * 32}&dn=x",
        "indexed": f"magnet:?xt.1=urn:btih:{h}&tr.1=http://a/&tr.2=http://b/",
        "bad-escape": f"magnet:?xt=urn:btih:{h}&dn=%zz",
        "bad-peer": f"magnet:?xt=urn:btih:{h}&x.pe=::1:80",
        "bad-so": f"magnet:?xt=urn:btih:{h}&so=5-2",
        "no-hash": "magnet:?dn=nothing",
    }


def ut_metadata_inputs():
    size = 16485  # two pieces: 16384 + 101 bytes of zeros
    d0 = bencode({"msg_type": 1, "piece": 0, "total_size": size}) + bytes(16384)
    d1 = bencode({"msg_type": 1, "piece": 1, "total_size": size}) + bytes(size - 16384)
    reject = bencode({"msg_type": 2, "piece": 0})
    request = bencode({"msg_type": 0, "piece": 1})
    unknown = bencode({"msg_type": 7})
    def stream(*msgs):
        return (struct.pack(">H", size) + bytes([len(msgs) - 1])
                + b"".join(struct.pack(">H", len(m)) for m in msgs[:-1]) + b"".join(msgs))
    return {
        "complete": stream(d0, d1),
        "reject-then-data": stream(reject, request, unknown, d1, d0),
        "wrong-size": stream(bencode({"msg_type": 1, "piece": 0, "total_size": 5}) + b"12345"),
        "out-of-range": stream(bencode({"msg_type": 1, "piece": 9, "total_size": size}) + b"x"),
        "data": d1,
        "request": request,
        "trailing": reject + b"x",
    }


def ut_pex_inputs():
    added = bytes([10, 0, 0, 1, 0x1A, 0xE1, 10, 0, 0, 2, 0, 80])
    six = bytes(15) + b"\x01" + struct.pack(">H", 6881)
    return {
        "libtorrent": bytes([50]) + bencode({"added": added, "added.f": b"\x12\x01", "added6": six,
                                             "added6.f": b"\x04", "dropped": b"\x7f\x00\x00\x01\x1b\x58",
                                             "dropped6": b""}),
        "self": bytes([50]) + bencode({"added": bytes([127, 0, 0, 1, 0x1A, 0xE1, 127, 0, 0, 1, 0x1B, 0x58])}),
        "bad-flags": bytes([50]) + bencode({"added": added, "added.f": b"\x01"}),
        "cut": bytes([50]) + bencode({"added": added[:-1]}),
        "many": bytes([20]) + bencode({"added": b"".join(bytes([10, 1, i // 256, i % 256, 0, 1]) for i in range(600))}),
        "not-a-dict": bytes([50]) + bencode([1]),
    }


def bep_seeds():
    for name, data in udp_answers().items():
        write("udp_tracker", name, data)
    for name, text in magnet_links().items():
        write("magnet", name, text.encode())
    for name, data in ut_metadata_inputs().items():
        write("ut_metadata", name, data)
    for name, data in ut_pex_inputs().items():
        write("ut_pex", name, data)


if __name__ == "__main__":
    main()
    bep_seeds()
