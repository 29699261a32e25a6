#!/usr/bin/python3
"""Magnet link benchmark: Tessera, libtorrent and aria2 each start from the same magnet link
and fetch the metadata, then the data, from one libtorrent seeder on loopback.

Run with Debian's python (it has the libtorrent bindings), after `cargo build --release`:

    /usr/bin/python3 bench/magnet.py                    # 256 MiB, 256 KiB pieces, 3 runs
    /usr/bin/python3 bench/magnet.py --size 64MiB --runs 5 --leechers tessera-mio,libtorrent

The link names the seeder's opentracker (`tr=`, how aria2 finds it) and the seeder itself
(`x.pe=`, which Tessera and libtorrent read; aria2 ignores it). For every run each leecher
downloads into a fresh directory; the time from process start to the metadata (as each
client reports it: Tessera's "metadata received" line, libtorrent's METADATA line from
tests/scripts/lt_peer.py, aria2's "[METADATA]" download completing) and to its exit (every
piece verified) is recorded, and the data is checked against the seed's SHA-1. The table
shows medians over the runs. Helpers (processes, data, tracker, torrent) come from
bench/loopback.py. Every process is started and stopped by PID; every wait is bounded.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loopback  # noqa: E402
from loopback import (LT_SCRIPT, PYTHON, REPO, LibtorrentSeeder, Opentracker, Proc,  # noqa: E402
                      file_sha1, free_port, make_data, make_torrent, parse_size)


def tessera(binary):
    def argv(link, out):
        return [binary, "download", link, "-o", out, "--listen", "127.0.0.1:%d" % free_port()]
    return argv, ("metadata received from peers", True)


def libtorrent_leecher(link, out):
    return [PYTHON, LT_SCRIPT, "leech", "--no-stdin", "--torrent", link, "--dir", out,
            "--port", str(free_port())]


def aria2(link, out):
    return ["aria2c", "--interface=127.0.0.1", "--disable-ipv6=true", "--enable-dht=false",
            "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
            "--listen-port=%d" % free_port(), "--seed-time=0", "--file-allocation=none",
            "--summary-interval=0", "--console-log-level=notice", "--bt-max-peers=0",
            "--bt-save-metadata=false", "--stop-with-process=%d" % os.getpid(),
            "--dir=" + out, link]


def leechers():
    mio = os.path.join(REPO, "target", "release", "tessera-mio")
    argv, needle = tessera(mio)
    return {
        "tessera-mio": (argv, needle),
        "libtorrent": (libtorrent_leecher, ("METADATA", False)),
        "aria2": (aria2, ("[METADATA]", False)),
    }


def one_run(name, argv, needle, link, rundir, data_name, sha):
    out = os.path.join(rundir, "out")
    os.makedirs(out)
    text, on_stderr = needle
    start = time.monotonic()
    proc = Proc("leech-" + name, argv(link, out), rundir,
                env=dict(os.environ, NO_COLOR="1"))
    metadata = None
    deadline = start + 600
    while proc.p.poll() is None:
        if time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError("%s: timeout\n%s" % (name, proc.tail()))
        if metadata is None:
            with open(proc.err_path if on_stderr else proc.out_path, errors="replace") as f:
                if text in f.read():
                    metadata = time.monotonic() - start
        time.sleep(0.005)
    done = time.monotonic() - start
    if proc.p.returncode != 0:
        raise RuntimeError("%s exited %d\n%s" % (name, proc.p.returncode, proc.tail()))
    proc.stop()
    got = file_sha1(os.path.join(out, data_name))
    if got != sha:
        raise RuntimeError("%s: data differs (%s, expected %s)" % (name, got, sha))
    return metadata, done


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="256MiB")
    ap.add_argument("--piece", default="256KiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--leechers", default="tessera-mio,libtorrent,aria2")
    args = ap.parse_args()
    size = parse_size(args.size)
    piece = parse_size(args.piece)
    table = leechers()
    chosen = [n.strip() for n in args.leechers.split(",") if n.strip()]
    for n in chosen:
        if n not in table:
            sys.exit("unknown leecher %s (known: %s)" % (n, ", ".join(table)))
    if "tessera-mio" in chosen and not os.access(table["tessera-mio"][0]("x", "y")[0], os.X_OK):
        sys.exit("build first: cargo build --release")

    work = tempfile.mkdtemp(prefix="tessera-bench-magnet-")
    try:
        seed_dir = os.path.join(work, "seed")
        os.makedirs(seed_dir)
        data_name = "data.bin"
        sha = make_data(os.path.join(seed_dir, data_name), size)
        tracker_port = free_port()
        torrent = os.path.join(work, "data.torrent")
        # The tracker's whitelist needs the hash, which needs the URL: make it twice.
        url = "http://127.0.0.1:%d/announce" % tracker_port
        info_hash = make_torrent(os.path.join(seed_dir, data_name), piece, url, torrent)
        tracker = Opentracker(work, [info_hash], tracker_port)
        seeder = LibtorrentSeeder(None)
        seeder.start(torrent, seed_dir, work)
        tracker.wait_seeders(info_hash, 1, 60)
        link = "magnet:?xt=urn:btih:%s&dn=%s&tr=%s&x.pe=127.0.0.1:%d" % (
            info_hash, data_name, urllib.parse.quote(url, safe=""), seeder.port)
        results = {n: [] for n in chosen}
        for run in range(args.runs):
            for n in chosen:
                argv, needle = table[n]
                rundir = os.path.join(work, "runs", "%s-%d" % (n, run))
                os.makedirs(rundir)
                meta, done = one_run(n, argv, needle, link, rundir, data_name, sha)
                results[n].append((meta, done))
                print("run %d %-12s metadata %s  done %.2f s" % (
                    run + 1, n, "%.3f s" % meta if meta is not None else "?", done), flush=True)
        print("\n%s, %s pieces, %d runs, medians:" % (args.size, args.piece, args.runs))
        print("%-12s %14s %14s %10s" % ("leecher", "metadata (s)", "complete (s)", "MiB/s"))
        for n in chosen:
            metas = [m for m, _ in results[n] if m is not None]
            dones = [d for _, d in results[n]]
            med = statistics.median(dones)
            print("%-12s %14s %14.2f %10.1f" % (
                n, "%.3f" % statistics.median(metas) if metas else "?", med,
                size / (1 << 20) / med))
        seeder.stop()
        tracker.proc.stop()
    finally:
        Proc.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        loopback.Proc.stop_all()
        sys.exit(130)
