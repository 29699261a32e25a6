#!/usr/bin/python3
"""Swarm benchmark: one seeder with a capped upload, six leechers joining together.

Run with Debian's python (it has the libtorrent bindings):

    /usr/bin/python3 bench/swarm.py                                # libtorrent seeder, 256 MiB
    /usr/bin/python3 bench/swarm.py --size 1GiB --runs 3 --upload-limit 40MiB
    /usr/bin/python3 bench/swarm.py --seeders tessera-mio          # needs seed --max-upload-rate

Each run starts a private opentracker and the seeder afresh, waits until the tracker lists
the seeder, then starts all the leechers of one kind at once (`--leechers`, default six
tessera-mio, then six libtorrent: the kinds take turns run by run). Every leecher is told
the seeder's address and learns the others from the tracker; each keeps serving the others
after it completes (`--leave-on-complete` makes them exit instead), until the last one is
done. Measured per run: when each leecher completed (from the common start), the bytes the
seeder uploaded, the seeder's CPU seconds and the leechers' CPU seconds (all six, including
what they serve each other), and every download is checked against the seed's SHA-1.

How the seeder's upload is counted: libtorrent's own count of payload bytes uploaded
(`total_payload_upload`, through lt_peer.py's `stats`); for a Tessera seeder, the bytes its
process wrote to its sockets (`wchar` in /proc/<pid>/io: Tessera writes with writev, which
it counts; the seeder writes nothing else but a few log lines), which includes the 13
bytes of framing per 16 KiB block. Seeders and leechers run on 127.0.0.1, everything is
stopped by PID, every wait is bounded.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in bench/
import loopback as lb  # noqa: E402  (the shared helpers: processes, tracker, data)

REPO = lb.REPO
RESULTS_DIR = lb.RESULTS_DIR

# ---- seeders --------------------------------------------------------------------------------


class LibtorrentSeeder:
    name = "libtorrent"

    def __init__(self, ctx):
        self.ctx = ctx

    def available(self):
        return True, ""

    def start(self, torrent, data_dir, logdir):
        self.port = lb.free_port()
        self.proc = lb.Proc("seed-libtorrent",
                            [lb.PYTHON, lb.LT_SCRIPT, "seed", "--torrent", torrent,
                             "--dir", data_dir, "--port", str(self.port), "--seed-mode",
                             "--upload-limit", str(self.ctx.upload_limit),
                             "--timeout", str(self.ctx.timeout + 600)],
                            logdir, stdin=subprocess.PIPE)
        self.proc.wait_line("SEEDING", 600)
        self.pid = self.proc.p.pid
        self._stats_seen = 0

    def uploaded(self):
        """Payload bytes uploaded so far, asked through lt_peer.py's `stats`."""
        self.proc.p.stdin.write(b"stats\n")
        self.proc.p.stdin.flush()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(self.proc.out_path, errors="replace") as f:
                stats = [line for line in f if line.startswith("STATS ")]
            if len(stats) > self._stats_seen:
                self._stats_seen = len(stats)
                fields = dict(w.split("=") for w in stats[-1].split()[1:])
                return int(fields["uploaded"])
            time.sleep(0.05)
        raise RuntimeError("the libtorrent seeder did not answer `stats`\n" + self.proc.tail())

    def stop(self):
        self.proc.stop()


class TesseraSeeder:
    """`tessera-mio seed --max-upload-rate`: the flag comes with the rate limits; until then
    this seeder reports itself unavailable."""
    name = "tessera-mio"
    binary = "tessera"

    def __init__(self, ctx):
        self.ctx = ctx

    def available(self):
        path = getattr(self.ctx, self.binary)
        if not os.access(path, os.X_OK):
            return False, "%s not found" % path
        help_text = subprocess.run([path, "seed", "--help"], capture_output=True, text=True,
                                   timeout=30).stdout
        if "--max-upload-rate" not in help_text:
            return False, "%s seed has no --max-upload-rate yet" % path
        return True, ""

    def start(self, torrent, data_dir, logdir):
        self.port = lb.free_port()
        self.proc = lb.Proc("seed-" + self.name,
                            [getattr(self.ctx, self.binary), "seed", torrent, "--data", data_dir,
                             "--listen", "127.0.0.1:%d" % self.port,
                             "--max-upload-rate", str(self.ctx.upload_limit), "-v"],
                            logdir, env=dict(os.environ, NO_COLOR="1"))
        self.proc.wait_line("pieces verified, seeding", 600, stderr=True)
        self.pid = self.proc.p.pid

    def uploaded(self):
        """Bytes written to its sockets so far (see the module docs)."""
        with open("/proc/%d/io" % self.pid) as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
        raise RuntimeError("no wchar in /proc/%d/io" % self.pid)

    def stop(self):
        self.proc.stop()


class TesseraSmolSeeder(TesseraSeeder):
    name = "tessera-smol"
    binary = "tessera_smol"


SEEDERS = {c.name: c for c in (LibtorrentSeeder, TesseraSeeder, TesseraSmolSeeder)}

# ---- leechers -------------------------------------------------------------------------------
# command(torrent, out, seeder_port, stay) -> argv; done_line: what it prints once complete
# (on stdout, or stderr if done_on_stderr).


class TesseraLeecher:
    name = "tessera-mio"
    binary = "tessera"
    done_on_stderr = True

    def __init__(self, ctx):
        self.ctx = ctx

    def available(self):
        path = getattr(self.ctx, self.binary)
        return os.access(path, os.X_OK), path

    def command(self, torrent, out, seeder_port, stay):
        argv = [getattr(self.ctx, self.binary), "download", torrent, "-o", out,
                "--listen", "127.0.0.1:%d" % lb.free_port(),
                "--peer", "127.0.0.1:%d" % seeder_port]
        return argv + (["--seed"] if stay else [])

    def done_line(self, stay):
        # With --seed it says so and goes on; without, it exits 0 once complete.
        return "download complete, seeding" if stay else None


class TesseraSmolLeecher(TesseraLeecher):
    name = "tessera-smol"
    binary = "tessera_smol"


class LibtorrentLeecher:
    name = "libtorrent"
    done_on_stderr = False

    def __init__(self, ctx):
        self.ctx = ctx

    def available(self):
        return True, lb.LT_SCRIPT

    def command(self, torrent, out, seeder_port, stay):
        argv = [lb.PYTHON, lb.LT_SCRIPT, "leech", "--no-stdin", "--torrent", torrent,
                "--dir", out, "--port", str(lb.free_port()),
                "--peer", "127.0.0.1:%d" % seeder_port,
                "--timeout", str(self.ctx.timeout + 60)]
        return argv + (["--keep-seeding"] if stay else [])

    def done_line(self, stay):
        return "DONE " if stay else None


LEECHERS = {c.name: c for c in (TesseraLeecher, TesseraSmolLeecher, LibtorrentLeecher)}

# ---- one run --------------------------------------------------------------------------------


def printed(proc, needle, stderr):
    with open(proc.err_path if stderr else proc.out_path, errors="replace") as f:
        return any(needle in line for line in f)


def one_run(ctx, seeder_cls, leecher, torrent, info_hash, run_index):
    tag = "%s-%s-%d" % (seeder_cls.name, leecher.name, run_index)
    rundir = os.path.join(ctx.workdir, "runs", tag)
    os.makedirs(rundir)
    stay = not ctx.leave_on_complete
    result = {"seeder": seeder_cls.name, "leecher": leecher.name, "run": run_index,
              "size": ctx.size, "leechers": ctx.count, "upload_limit": ctx.upload_limit,
              "stay": stay}
    procs = []
    tracker = lb.Opentracker(rundir, [info_hash], ctx.tracker_port)
    seeder = seeder_cls(ctx)
    try:
        seeder.start(torrent, ctx.seed_dir, rundir)
        tracker.wait_listed(info_hash, seeder.port, 60)
        up0 = seeder.uploaded()
        cpu0 = lb.proc_cpu_seconds(seeder.pid)
        os.sync()
        start = time.monotonic()
        for k in range(ctx.count):
            out = os.path.join(rundir, "out%d" % k)
            os.makedirs(out)
            timefile = os.path.join(rundir, "time%d.txt" % k)
            argv = ["/usr/bin/time", "-v", "-o", timefile] + leecher.command(
                torrent, out, seeder.port, stay)
            env = dict(os.environ, HOME=out, NO_COLOR="1")
            procs.append((lb.Proc("leech%d" % k, argv, rundir, env=env), out, timefile))
        done = [None] * ctx.count
        last_total, last_change = -1, start
        needle = leecher.done_line(stay)
        while None in done:
            now = time.monotonic()
            for k, (p, out, _) in enumerate(procs):
                if done[k] is not None:
                    continue
                if needle is None:
                    if p.p.poll() is not None:
                        if p.p.returncode != 0:
                            raise RuntimeError("leecher %d exited %d\n%s"
                                               % (k, p.p.returncode, p.tail()))
                        done[k] = now - start
                elif printed(p, needle, leecher.done_on_stderr):
                    done[k] = now - start
                elif p.p.poll() is not None:
                    raise RuntimeError("leecher %d exited (%s) before completing\n%s"
                                       % (k, p.p.returncode, p.tail()))
            total = sum(lb.allocated_bytes(out) for _, out, _ in procs)
            if total != last_total:
                last_total, last_change = total, now
            if now - start > ctx.timeout or now - last_change > ctx.stall_timeout:
                raise RuntimeError("gave up after %.0f s (%d of %d leechers done, %d bytes on disk)"
                                   % (now - start, ctx.count - done.count(None), ctx.count,
                                      total))
            time.sleep(0.05)
        last = max(done)
        uploaded = seeder.uploaded() - up0
        seeder_cpu = lb.proc_cpu_seconds(seeder.pid) - cpu0
        if seeder.proc.p.poll() is not None:
            raise RuntimeError("the seeder exited\n" + seeder.proc.tail())
        # Stop the leechers still serving each other (SIGINT: a clean stop; time(1) ignores
        # it and reports the child's resources), then the seeder.
        for p, _, _ in procs:
            if p.p.poll() is None:
                p.signal_group(signal.SIGINT)
        deadline = time.monotonic() + 30
        for p, _, _ in procs:
            try:
                p.p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            p.stop()
        cpu = []
        for _, _, timefile in procs:
            try:
                cpu.append(lb.parse_time_v(timefile)[0])
            except (OSError, KeyError, ValueError):
                cpu.append(float("nan"))
        if not ctx.no_verify:
            for k, (_, out, _) in enumerate(procs):
                got = os.path.join(out, ctx.data_name)
                digest = lb.file_sha1(got) if os.path.exists(got) else None
                if digest != ctx.data_sha1:
                    raise RuntimeError("leecher %d's data differs (sha1 %s)" % (k, digest))
        result.update(ok=True, completed_s=sorted(done), last_s=last,
                      median_s=statistics.median(done), seeder_uploaded=uploaded,
                      seeder_copies=uploaded / ctx.size, seeder_cpu_s=seeder_cpu,
                      leechers_cpu_s=sum(cpu))
    except RuntimeError as e:
        result.update(ok=False, error=str(e))
    finally:
        for p, _, _ in procs:
            p.stop()
        seeder_proc = getattr(seeder, "proc", None)
        if seeder_proc is not None:
            seeder.stop()
        tracker.proc.stop()
        shutil.rmtree(rundir, ignore_errors=True)
    return result


# ---- main -----------------------------------------------------------------------------------


def table(results):
    rows = ["| seeder | leechers | last done s (median, range) | median leecher done s "
            "| seeder uploaded MiB (median) | copies of the data | seeder CPU s "
            "| leechers' CPU s (all) | runs |",
            "|---|---|---|---:|---:|---:|---:|---:|---|"]
    keys = []
    for r in results:
        k = (r["seeder"], r["leecher"])
        if k not in keys:
            keys.append(k)
    for seeder, leecher in keys:
        rs = [r for r in results if (r["seeder"], r["leecher"]) == (seeder, leecher)]
        ok = [r for r in rs if r["ok"]]
        name = "%d × %s" % (rs[0]["leechers"], leecher)
        if not ok:
            rows.append("| %s | %s | failed | | | | | | 0/%d |" % (seeder, name, len(rs)))
            continue
        last = [r["last_s"] for r in ok]
        up = [r["seeder_uploaded"] / (1 << 20) for r in ok]
        rows.append("| %s | %s | %.1f (%.1f–%.1f) | %.1f | %.0f | %.2f | %.1f | %.1f | %d/%d |" % (
            seeder, name, statistics.median(last), min(last), max(last),
            statistics.median(r["median_s"] for r in ok), statistics.median(up),
            statistics.median(r["seeder_copies"] for r in ok),
            statistics.median(r["seeder_cpu_s"] for r in ok),
            statistics.median(r["leechers_cpu_s"] for r in ok), len(ok), len(rs)))
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=lb.parse_size, default=256 << 20, help="default 256MiB")
    ap.add_argument("--piece", type=lb.parse_size, default=256 << 10, help="default 256KiB")
    ap.add_argument("--count", type=int, default=6, help="leechers per run (default 6)")
    ap.add_argument("--upload-limit", type=lb.parse_size, default=40 << 20,
                    help="the seeder's upload cap in bytes/s (default 40MiB)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each leecher kind")
    ap.add_argument("--leechers", default="tessera-mio,libtorrent",
                    help="kinds taking turns, from: " + ", ".join(LEECHERS))
    ap.add_argument("--seeders", default="libtorrent",
                    help="comma-separated, from: %s" % ", ".join(SEEDERS))
    ap.add_argument("--leave-on-complete", action="store_true",
                    help="leechers exit once complete instead of serving until the last is done")
    ap.add_argument("--tessera", default=os.path.join(REPO, "target", "release", "tessera-mio"))
    ap.add_argument("--tessera-smol", dest="tessera_smol",
                    default=os.path.join(REPO, "target", "release", "tessera-smol"))
    ap.add_argument("--timeout", type=int, default=600, help="seconds per run")
    ap.add_argument("--stall-timeout", type=int, default=60,
                    help="give a run up when no leecher wrote anything for this many seconds")
    ap.add_argument("--workdir", help="default: a new temp dir, removed at the end")
    ap.add_argument("--no-verify", action="store_true", help="skip the SHA-1 check of downloads")
    ctx = ap.parse_args()

    leechers = []
    for name in ctx.leechers.split(","):
        if name not in LEECHERS:
            ap.error("unknown leecher %r" % name)
        leecher = LEECHERS[name](ctx)
        ok, what = leecher.available()
        if not ok:
            ap.error("leecher %s: %s not found" % (name, what))
        leechers.append(leecher)
    seeders = []
    for name in ctx.seeders.split(","):
        if name not in SEEDERS:
            ap.error("unknown seeder %r" % name)
        ok, why = SEEDERS[name](ctx).available()
        if not ok:
            ap.error("seeder %s: %s" % (name, why))
        seeders.append(SEEDERS[name])
    load_before = os.getloadavg()

    own_workdir = ctx.workdir is None
    ctx.workdir = ctx.workdir or tempfile.mkdtemp(prefix="tessera-swarm-")
    os.makedirs(ctx.workdir, exist_ok=True)
    results = []
    try:
        ctx.seed_dir = os.path.join(ctx.workdir, "seed")
        os.makedirs(ctx.seed_dir, exist_ok=True)
        ctx.data_name = "swarm-%s.bin" % lb.human(ctx.size).replace(" ", "")
        data_path = os.path.join(ctx.seed_dir, ctx.data_name)
        lb.log("writing %s of pseudo-random data to %s" % (lb.human(ctx.size), data_path))
        ctx.data_sha1 = lb.make_data(data_path, ctx.size)
        ctx.tracker_port = lb.free_port()
        url = "http://127.0.0.1:%d/announce" % ctx.tracker_port
        torrent = os.path.join(ctx.workdir, "swarm.torrent")
        info_hash = lb.make_torrent(data_path, ctx.piece, url, torrent)
        for seeder_cls in seeders:
            for i in range(ctx.runs):
                for leecher in leechers:
                    r = one_run(ctx, seeder_cls, leecher, torrent, info_hash, i)
                    results.append(r)
                    if r["ok"]:
                        lb.log("%s seeder, %d × %s, run %d: last done %.1f s (all: %s), seeder "
                               "uploaded %.0f MiB (%.2f copies), seeder CPU %.1f s, leechers' "
                               "CPU %.1f s" % (
                                   seeder_cls.name, ctx.count, leecher.name, i, r["last_s"],
                                   " ".join("%.1f" % t for t in r["completed_s"]),
                                   r["seeder_uploaded"] / (1 << 20), r["seeder_copies"],
                                   r["seeder_cpu_s"], r["leechers_cpu_s"]))
                    else:
                        lb.log("%s seeder, %d × %s, run %d FAILED: %s" % (
                            seeder_cls.name, ctx.count, leecher.name, i, r["error"]))
    finally:
        lb.Proc.stop_all()
        if own_workdir:
            shutil.rmtree(ctx.workdir, ignore_errors=True)

    load_after = os.getloadavg()
    print("Swarm: one seeder capped at %s/s, %d leechers joining together, %s in %s pieces, "
          "%d runs each, leechers %s; %s; load average %.1f before, %.1f after (%d CPUs)\n" % (
              lb.human(ctx.upload_limit), ctx.count, lb.human(ctx.size), lb.human(ctx.piece),
              ctx.runs, "leave when complete" if ctx.leave_on_complete
              else "serve until the last is done", time.strftime("%Y-%m-%d"), load_before[0],
              load_after[0], os.cpu_count()))
    print(table(results))
    os.makedirs(RESULTS_DIR, exist_ok=True)
    out = os.path.join(RESULTS_DIR, "swarm-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(out, "w") as f:
        json.dump({"size": ctx.size, "piece": ctx.piece, "count": ctx.count,
                   "upload_limit": ctx.upload_limit, "runs": ctx.runs,
                   "host_cpus": os.cpu_count(), "load_before": load_before,
                   "load_after": load_after, "results": results}, f, indent=1)
    print("\nraw results: %s" % os.path.relpath(out, REPO))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        lb.Proc.stop_all()
        sys.exit(130)
