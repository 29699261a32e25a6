#!/usr/bin/python3
"""A stand-in for `tessera-mio`, built from libtorrent, to check the end-to-end tests
themselves (not Tessera): a scenario that fails against this stand-in has a bug in the test or
the harness. Only the subcommands the tests use:

    stand_in_tessera.py download <TORRENT> -o DIR [--peer HOST:PORT]... [--listen ADDR:PORT] [--seed]
    stand_in_tessera.py seed <TORRENT> --data DIR [--listen ADDR:PORT] [--peer HOST:PORT]...
    stand_in_tessera.py info <TORRENT>
    stand_in_tessera.py verify <TORRENT> --data DIR

`seed` and `download --seed` print Tessera's lines on stderr ("all N pieces verified, seeding",
"download complete, seeding") and stop on SIGINT or SIGTERM like Tessera: the torrent is paused
(libtorrent announces `stopped`), then the process exits 0. `-v`/`-vv` are accepted and ignored.
The hostile-leecher scenario of `seeding.rs` checks Tessera's own limits (16 KiB, 20 invalid
requests, 500 queued); libtorrent's differ, so that one is not expected to pass here.

Use it through a directory holding a `tessera-mio` symlink to this file:

    mkdir -p /tmp/stand-in && ln -sf $PWD/tests/scripts/stand_in_tessera.py /tmp/stand-in/tessera-mio
    TESSERA_BIN_DIR=/tmp/stand-in cargo test -p tessera-tests --profile ci --test download
"""
import argparse
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

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
    cmd = ["/usr/bin/python3", os.path.join(HERE, "lt_peer.py"), "leech",
           "--torrent", args.torrent, "--dir", args.o, "--port", args.listen.rsplit(":", 1)[1]]
    for p in args.peer:
        cmd += ["--peer", p]
    if args.seed:
        run_until_interrupted(cmd + ["--keep-seeding"], "DONE", "download complete, seeding")
    os.execv(cmd[0], cmd[:3] + ["--no-stdin"] + cmd[3:])


def seed(args):
    ti = lt.torrent_info(args.torrent)
    cmd = ["/usr/bin/python3", os.path.join(HERE, "lt_peer.py"), "seed",
           "--torrent", args.torrent, "--dir", args.data, "--port", args.listen.rsplit(":", 1)[1]]
    for p in args.peer:
        cmd += ["--peer", p]
    run_until_interrupted(cmd, "SEEDING",
                          "all %d pieces verified, seeding" % ti.num_pieces())


def run_until_interrupted(cmd, ready, message):
    """Runs lt_peer.py; prints `message` on stderr once it prints `ready`; on SIGINT or SIGTERM
    pauses the torrent (the `stopped` announce), then exits 0."""
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines = []
    cond = threading.Condition()

    def reader():
        for line in child.stdout:
            with cond:
                lines.append(line.strip())
                cond.notify_all()
            if line.startswith(ready):
                print("stand-in: " + message + " (Ctrl-C to stop)", file=sys.stderr, flush=True)
        with cond:
            lines.append(None)
            cond.notify_all()

    def wait_for(prefix, timeout):
        deadline = time.monotonic() + timeout
        with cond:
            while time.monotonic() < deadline:
                if any(l is not None and l.startswith(prefix) for l in lines):
                    return True
                if None in lines:
                    return False
                cond.wait(deadline - time.monotonic())
        return False

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=reader, daemon=True).start()
    while not stop.is_set():
        if child.poll() is not None:
            fail("libtorrent exited with status %d" % child.returncode)
        stop.wait(0.1)
    print("stopping: telling the trackers", file=sys.stderr, flush=True)
    try:
        child.stdin.write("pause\n")
        child.stdin.flush()
        wait_for("OK pause", 5)
        time.sleep(0.5)  # the `stopped` announce goes out after the pause
        child.stdin.write("quit\n")
        child.stdin.flush()
    except BrokenPipeError:
        pass
    try:
        child.wait(5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    sys.exit(0)


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
    d.add_argument("--seed", action="store_true")
    d.add_argument("-v", "--verbose", action="count")
    sd = sub.add_parser("seed")
    sd.add_argument("torrent")
    sd.add_argument("--data", default=".")
    sd.add_argument("--peer", action="append", default=[])
    sd.add_argument("--listen", default="127.0.0.1:0")
    sd.add_argument("-v", "--verbose", action="count")
    i = sub.add_parser("info")
    i.add_argument("torrent")
    v = sub.add_parser("verify")
    v.add_argument("torrent")
    v.add_argument("--data", required=True)
    args = ap.parse_args()
    {"download": download, "seed": seed, "info": info, "verify": verify}[args.cmd](args)


if __name__ == "__main__":
    main()
