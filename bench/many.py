#!/usr/bin/python3
"""Many small torrents at once: one download process given N torrents, next to aria2c given
the same N, from one libtorrent session seeding them all, on loopback.

Run with Debian's python (it has the libtorrent bindings), after a release build:

    cargo build --release -p tessera-mio -p tessera-smol
    /usr/bin/python3 bench/many.py                                  # 100 x 1 MiB, 3 runs
    /usr/bin/python3 bench/many.py --count 100 --size 4MiB --runs 1 --leechers tessera-mio,aria2

Each torrent is one file of pseudo-random bytes with 32 KiB pieces (mktorrent's smallest),
announced to a private opentracker; every client learns its peers from the tracker only
(aria2 cannot be told a peer), so each has to announce N torrents. The seeder is one
libtorrent session serving all N (this script in `serve` mode). Per run: wall time from the
leecher's start to its exit, its CPU seconds (user + sys) and peak RSS from
`/usr/bin/time -v`, and the seeder's CPU seconds over the run; every file is checked against
its SHA-1 afterwards. The clients:

- `tessera-mio`, `tessera-smol`: `download T1 ... TN -o OUT --listen 127.0.0.1:PORT` (one
  session, every torrent at once);
- `aria2`: `aria2c T1 ... TN --max-concurrent-downloads=N --seed-time=0 ...` (aria2 runs 5
  downloads at a time unless told otherwise).

Every process is started and stopped by PID; every wait is bounded.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loopback  # noqa: E402  (its helpers: processes, tracker, torrents, /usr/bin/time)
from loopback import (Opentracker, Proc, file_sha1, free_port, human, log, make_data,  # noqa: E402
                      make_torrent, parse_size, parse_time_v, proc_cpu_seconds, wait_port)

import libtorrent as lt  # noqa: E402

REPO = loopback.REPO
PYTHON = loopback.PYTHON
PIECE = 32 << 10


# ---- the seeder: one libtorrent session, every torrent ----------------------------------------


def serve(args):
    """`many.py serve --port P --dir D T...`: seeds every torrent; prints LISTENING, then
    SEEDING once all are checked; exits when stdin closes."""
    ses = lt.session({
        "listen_interfaces": "127.0.0.1:%d" % args.port,
        "outgoing_interfaces": "127.0.0.1",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_incoming_utp": False, "enable_outgoing_utp": False,
        "allow_multiple_connections_per_ip": True,
        # Serve them all at once: no queueing of seeds, no cap on active torrents.
        "active_downloads": -1, "active_seeds": -1, "active_limit": -1,
        "connections_limit": 5000, "unchoke_slots_limit": -1,
        # libtorrent's default accept backlog is 5: a client dialling it for 100 torrents
        # at once loses connections in the kernel's queue and waits for its own timeout.
        "listen_queue_size": 500,
        "alert_mask": lt.alert.category_t.error_notification,
    })
    deadline = time.monotonic() + 10
    while ses.listen_port() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    print("LISTENING", ses.listen_port(), flush=True)
    handles = []
    for t in args.torrents:
        p = lt.add_torrent_params()
        p.ti = lt.torrent_info(t)
        p.save_path = args.dir
        p.flags &= ~lt.torrent_flags.auto_managed
        p.flags &= ~lt.torrent_flags.paused
        handles.append(ses.add_torrent(p))
    deadline = time.monotonic() + 600
    while not all(h.status().is_seeding for h in handles):
        if time.monotonic() > deadline:
            print("many.py serve: not seeding after 600 s", file=sys.stderr, flush=True)
            os._exit(3)
        ses.pop_alerts()
        time.sleep(0.1)
    print("SEEDING", flush=True)
    for _ in sys.stdin:
        pass
    os._exit(0)


# ---- the leechers ---------------------------------------------------------------------------


def tessera_command(binary):
    def command(ctx, torrents, out):
        return [binary, "download", *torrents, "-o", out, "--listen",
                "127.0.0.1:%d" % free_port()]
    return command


def aria2_command(ctx, torrents, out):
    return ["aria2c", "--interface=127.0.0.1", "--disable-ipv6=true", "--enable-dht=false",
            "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
            "--listen-port=%d" % free_port(), "--seed-time=0", "--file-allocation=none",
            "--summary-interval=0", "--console-log-level=warn",
            "--max-concurrent-downloads=%d" % len(torrents),
            "--stop-with-process=%d" % os.getpid(), "--dir=" + out, *torrents]


def one_run(ctx, name, command, torrents, files, seeder_pid, run):
    rundir = os.path.join(ctx.workdir, "runs", "%s-%d" % (name, run))
    out = os.path.join(rundir, "out")
    os.makedirs(out)
    timefile = os.path.join(rundir, "time.txt")
    argv = ["/usr/bin/time", "-v", "-o", timefile] + command(ctx, torrents, out)
    os.sync()
    cpu0 = proc_cpu_seconds(seeder_pid)
    start = time.monotonic()
    proc = Proc("leech", argv, rundir, env=dict(os.environ, HOME=rundir, NO_COLOR="1"))
    result = {"client": name, "run": run}
    while proc.p.poll() is None:
        if time.monotonic() - start > ctx.timeout:
            proc.stop()
            result.update(ok=False, error="timeout after %ds" % ctx.timeout, tail=proc.tail())
            return result
        time.sleep(0.05)
    seconds = time.monotonic() - start
    seeder_cpu = proc_cpu_seconds(seeder_pid) - cpu0
    proc.stop()
    if proc.p.returncode != 0:
        result.update(ok=False, error="exit status %d" % proc.p.returncode, tail=proc.tail())
        return result
    cpu, rss_kib = parse_time_v(timefile)
    bad = [f for f, digest in files if not os.path.exists(os.path.join(out, f))
           or file_sha1(os.path.join(out, f)) != digest]
    if bad:
        result.update(ok=False, error="%d files differ or are missing (%s...)"
                      % (len(bad), bad[0]))
        return result
    result.update(ok=True, seconds=seconds, cpu_s=cpu, peak_rss_mib=rss_kib / 1024,
                  seeder_cpu_s=seeder_cpu)
    subprocess.run(["rm", "-rf", out], check=False)
    return result


def table(results, ctx):
    rows = ["| client | runs ok | median wall s | median CPU s | peak RSS MiB | seeder CPU s |",
            "|---|---|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["client"] for r in results):
        ok = [r for r in results if r["client"] == name and r["ok"]]
        if not ok:
            rows.append("| %s | 0/%d | | | | |" % (name, ctx.runs))
            continue
        rows.append("| %s | %d/%d | %.1f | %.2f | %.0f | %.2f |" % (
            name, len(ok), ctx.runs, statistics.median(r["seconds"] for r in ok),
            statistics.median(r["cpu_s"] for r in ok), max(r["peak_rss_mib"] for r in ok),
            statistics.median(r["seeder_cpu_s"] for r in ok)))
    return "\n".join(rows)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        ap = argparse.ArgumentParser()
        ap.add_argument("mode")
        ap.add_argument("--port", type=int, required=True)
        ap.add_argument("--dir", required=True)
        ap.add_argument("torrents", nargs="+")
        return serve(ap.parse_args())
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100, help="torrents (default 100)")
    ap.add_argument("--size", type=parse_size, default=1 << 20, help="each (default 1MiB)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--leechers", default="tessera-mio,tessera-smol,aria2")
    ap.add_argument("--tessera", default=os.path.join(REPO, "target", "release", "tessera-mio"))
    ap.add_argument("--tessera-smol", dest="tessera_smol",
                    default=os.path.join(REPO, "target", "release", "tessera-smol"))
    ap.add_argument("--timeout", type=int, default=600, help="seconds per run")
    ap.add_argument("--workdir", help="default: a new temp dir, removed at the end")
    ctx = ap.parse_args()
    clients = {"tessera-mio": tessera_command(ctx.tessera),
               "tessera-smol": tessera_command(ctx.tessera_smol),
               "aria2": aria2_command}
    chosen = ctx.leechers.split(",")
    for name in chosen:
        if name not in clients:
            ap.error("unknown leecher %r (from: %s)" % (name, ", ".join(clients)))
    load_before = os.getloadavg()
    own = ctx.workdir is None
    ctx.workdir = ctx.workdir or tempfile.mkdtemp(prefix="tessera-many-")
    seed_dir = os.path.join(ctx.workdir, "seed")
    tdir = os.path.join(ctx.workdir, "torrents")
    os.makedirs(seed_dir, exist_ok=True)
    os.makedirs(tdir, exist_ok=True)
    results = []
    try:
        tracker_port = free_port()
        url = "http://127.0.0.1:%d/announce" % tracker_port
        log("making %d torrents of %s" % (ctx.count, human(ctx.size)))
        torrents, hashes, files = [], [], []
        for i in range(ctx.count):
            name = "small-%03d.bin" % i
            data = os.path.join(seed_dir, name)
            files.append((name, make_data(data, ctx.size, seed=1000 + i)))
            t = os.path.join(tdir, "%03d.torrent" % i)
            hashes.append(make_torrent(data, PIECE, url, t))
            torrents.append(t)
        tracker = Opentracker(ctx.workdir, hashes, tracker_port)
        port = free_port()
        seeder = Proc("seed-libtorrent", [PYTHON, os.path.abspath(__file__), "serve",
                                          "--port", str(port), "--dir", seed_dir, *torrents],
                      ctx.workdir, stdin=subprocess.PIPE)
        seeder.wait_line("SEEDING", 600)
        wait_port(port, 10, "the libtorrent seeder")
        for h in hashes:
            tracker.wait_seeders(h, 1, 120)
        for name in chosen:
            for run in range(ctx.runs):
                r = one_run(ctx, name, clients[name], torrents, files, seeder.p.pid, run)
                results.append(r)
                if r["ok"]:
                    log("%s run %d: %.1f s, CPU %.2f s, peak RSS %.0f MiB, seeder CPU %.2f s"
                        % (name, run, r["seconds"], r["cpu_s"], r["peak_rss_mib"],
                           r["seeder_cpu_s"]))
                else:
                    log("%s run %d FAILED: %s\n%s" % (name, run, r["error"], r.get("tail", "")))
    finally:
        Proc.stop_all()
        if own:
            subprocess.run(["rm", "-rf", ctx.workdir], check=False)
    load_after = os.getloadavg()
    print("%d torrents of %s (32 KiB pieces) in one download, from one libtorrent seeder "
          "through opentracker, %d runs each, %s; load average %.1f before, %.1f after\n"
          % (ctx.count, human(ctx.size), ctx.runs, time.strftime("%Y-%m-%d"),
             load_before[0], load_after[0]))
    print(table(results, ctx))
    os.makedirs(loopback.RESULTS_DIR, exist_ok=True)
    out = os.path.join(loopback.RESULTS_DIR, "many-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(out, "w") as f:
        json.dump({"count": ctx.count, "size": ctx.size, "runs": ctx.runs,
                   "load_before": load_before, "load_after": load_after,
                   "results": results}, f, indent=1)
    print("\nraw results: %s" % os.path.relpath(out, REPO))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        Proc.stop_all()
        sys.exit(130)
