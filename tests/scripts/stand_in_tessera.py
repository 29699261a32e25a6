#!/usr/bin/python3
"""A stand-in for `tessera-mio`, built from libtorrent, to check the end-to-end tests
themselves (not Tessera): a scenario that fails against this stand-in has a bug in the test or
the harness. Only the subcommands the tests use:

    stand_in_tessera.py download <TORRENT> -o DIR [--peer HOST:PORT]... [--listen ADDR:PORT]
    stand_in_tessera.py info <TORRENT>
    stand_in_tessera.py verify <TORRENT> --data DIR

Use it through a directory holding a `tessera-mio` symlink to this file:

    mkdir -p /tmp/stand-in && ln -sf $PWD/tests/scripts/stand_in_tessera.py /tmp/stand-in/tessera-mio
    TESSERA_BIN_DIR=/tmp/stand-in cargo test -p tessera-tests --release --test download
"""
import argparse
import hashlib
import os
import sys

import libtorrent as lt

HERE = os.path.dirname(os.path.realpath(__file__))


def fail(msg):
    print("error: " + msg, file=sys.stderr)
    sys.exit(2)


def load(path):
    with open(path, "rb") as f:
        meta = lt.bdecode(f.read())
    if meta is None or b"info" not in meta:
        fail("%s is not a torrent" % path)
    return meta


def unsafe_paths(info):
    """Path components that would climb out of the output directory."""
    parts = [info[b"name"]]
    for f in info.get(b"files", []):
        parts.extend(f[b"path"])
    for part in parts:
        if part in (b"..", b".", b"") or b"/" in part or b"\\" in part:
            return part
    return None


def download(args):
    meta = load(args.torrent)
    bad = unsafe_paths(meta[b"info"])
    if bad is not None:
        fail("refusing %s: unsafe path component %r" % (args.torrent, bad.decode(errors="replace")))
    cmd = ["/usr/bin/python3", os.path.join(HERE, "lt_peer.py"), "leech", "--no-stdin",
           "--torrent", args.torrent, "--dir", args.o, "--port", args.listen.rsplit(":", 1)[1]]
    for p in args.peer:
        cmd += ["--peer", p]
    os.execv(cmd[0], cmd)


def info(args):
    ti = lt.torrent_info(args.torrent)
    print("info hash: %s" % ti.info_hash())
    print("name: %s" % ti.name())
    print("size: %d" % ti.total_size())


def verify(args):
    meta = load(args.torrent)
    info = meta[b"info"]
    name = info[b"name"].decode()
    files = info.get(b"files")
    if files is None:
        paths = [(os.path.join(args.data, name), info[b"length"])]
    else:
        paths = [(os.path.join(args.data, name, *[p.decode() for p in f[b"path"]]), f[b"length"])
                 for f in files]
    plen = info[b"piece length"]
    hashes = info[b"pieces"]
    buf = b""
    index = 0
    bad = 0
    for path, length in paths:
        with open(path, "rb") if length else open(os.devnull, "rb") as f:
            left = length
            while left:
                chunk = f.read(min(left, plen - len(buf)))
                if not chunk:
                    fail("%s is short" % path)
                left -= len(chunk)
                buf += chunk
                if len(buf) == plen:
                    bad += hashlib.sha1(buf).digest() != hashes[20 * index:20 * index + 20]
                    index += 1
                    buf = b""
    if buf:
        bad += hashlib.sha1(buf).digest() != hashes[20 * index:20 * index + 20]
    if bad:
        fail("%d pieces fail their hash" % bad)
    print("ok")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download")
    d.add_argument("torrent")
    d.add_argument("-o", required=True)
    d.add_argument("--peer", action="append", default=[])
    d.add_argument("--listen", default="127.0.0.1:0")
    i = sub.add_parser("info")
    i.add_argument("torrent")
    v = sub.add_parser("verify")
    v.add_argument("torrent")
    v.add_argument("--data", required=True)
    args = ap.parse_args()
    {"download": download, "info": info, "verify": verify}[args.cmd](args)


if __name__ == "__main__":
    main()
