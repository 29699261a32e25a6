#!/usr/bin/python3
"""Loopback download benchmark: one seeder and one leecher at a time, one single-file torrent.

Run with Debian's python (it has the libtorrent bindings):

    /usr/bin/python3 bench/loopback.py                      # 1 GiB, 256 KiB and 1 MiB pieces, 3 runs
    /usr/bin/python3 bench/loopback.py --size 256MiB --runs 1 --leechers libtorrent,aria2

For every piece size, seeder and leecher, each run downloads into a fresh directory under
`/usr/bin/time -v` (CPU seconds = user + sys, peak RSS), is checked against the seed's SHA-1,
and is timed from process start to exit. The table shows the median MiB/s over the runs and
CPU seconds per GiB; below it, the ratios of pairs of rows taken run by run (each Tessera
leecher against libtorrent's from the same seeder, each Tessera pair against libtorrent ->
libtorrent). Raw results go to bench/results/ as JSON. The seeder's data is real
pseudo-random bytes (never sparse), written once. Every process is started and stopped by
PID; every wait is bounded.

Peers find each other through a private opentracker (aria2 can only learn peers that way);
leechers that can be told a peer also get the seeder's address directly.

Seeders: `--seeders libtorrent,tessera-mio` (the default). All of them run at once, each
with a torrent of its own (the same data under another info hash, so the tracker gives a
leecher only its seeder), and the runs are interleaved: run 1 of every (seeder, leecher)
pair, then run 2, and so on, so that pairs compared were measured minutes apart, not a
quarter of an hour. For each run the seeder's CPU seconds (user + sys ticks from
/proc/<pid>/stat, before and after) and its peak RSS (VmHWM from /proc/<pid>/status, reset
through /proc/<pid>/clear_refs before the run) are recorded next to the leecher's.

Extending: a seeder is a class with start()/stop(), a port and a pid; add it to SEEDERS. A
leecher is a class whose command() returns the argv of a process that downloads and exits 0
when done; add it to LEECHERS.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import libtorrent as lt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LT_SCRIPT = os.path.join(REPO, "tests", "scripts", "lt_peer.py")
PYTHON = "/usr/bin/python3"
RESULTS_DIR = os.path.join(REPO, "bench", "results")

# ---- small utilities ------------------------------------------------------------------------


def parse_size(text):
    units = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
             "g": 1 << 30, "gib": 1 << 30}
    t = text.strip().lower()
    num = t.rstrip("kmgib")
    unit = t[len(num):]
    if unit not in units:
        raise argparse.ArgumentTypeError("bad size %r (use e.g. 256MiB, 1GiB)" % text)
    return int(float(num) * units[unit])


def human(n):
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return "%d %s" % (n // size, unit)
    return "%d B" % n


def log(*words):
    print("bench:", *words, file=sys.stderr, flush=True)


def free_port():
    """A port below the ephemeral range that binds for TCP and UDP right now."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except OSError:
        low = 32768
    for _ in range(1000):
        port = random.randrange(10000, max(low, 11000))
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                t.bind(("127.0.0.1", port))
                u.bind(("127.0.0.1", port))
                return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def wait_port(port, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s: nothing listens on 127.0.0.1:%d after %ds" % (what, port, timeout))


class Proc:
    """A process with output in files, stopped by PID (SIGTERM, SIGKILL after 3 s).

    Each runs in a process group of its own, whose id is its PID, and stop() signals that
    group: a leecher under /usr/bin/time is then stopped together with time itself."""
    live = []

    def __init__(self, name, argv, logdir, stdin=subprocess.DEVNULL, env=None):
        self.name = name
        self.out_path = os.path.join(logdir, name + ".out")
        self.err_path = os.path.join(logdir, name + ".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=stdin, env=env,
                                      start_new_session=True)
        Proc.live.append(self)

    def tail(self, n=15):
        text = []
        for path in (self.out_path, self.err_path):
            try:
                with open(path, errors="replace") as f:
                    lines = f.read().splitlines()[-n:]
            except OSError:
                lines = []
            text.append("--- %s ---\n%s" % (path, "\n".join(lines)))
        return "\n".join(text)

    def wait_line(self, needle, timeout, stderr=False):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.err_path if stderr else self.out_path, errors="replace") as f:
                for line in f:
                    if needle in line:
                        return line.strip()
            if self.p.poll() is not None:
                raise RuntimeError("%s exited (%s) before printing %r\n%s"
                                   % (self.name, self.p.returncode, needle, self.tail()))
            time.sleep(0.05)
        raise RuntimeError("%s printed no %r in %ds\n%s" % (self.name, needle, timeout, self.tail()))

    def signal_group(self, sig):
        try:
            os.killpg(self.p.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self):
        if self.p.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.p.wait(3)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.p.wait(10)
        if self in Proc.live:
            Proc.live.remove(self)

    @classmethod
    def stop_all(cls):
        for proc in list(cls.live):
            proc.stop()


# ---- data, torrents, tracker ----------------------------------------------------------------


def make_data(path, size, seed=1):
    """Real pseudo-random bytes (never sparse), with the file's SHA-1."""
    rng = random.Random(seed)
    sha = hashlib.sha1()
    chunk = 4 << 20
    with open(path, "wb") as f:
        left = size
        while left:
            block = rng.randbytes(min(chunk, left))
            f.write(block)
            sha.update(block)
            left -= len(block)
    return sha.hexdigest()


def file_sha1(path):
    sha = hashlib.sha1()
    with open(path, "rb") as f:
        while True:
            block = f.read(4 << 20)
            if not block:
                return sha.hexdigest()
            sha.update(block)


class Opentracker:
    """Debian's opentracker: whitelist-only, chroots into its dir, refuses to run as root."""

    def __init__(self, workdir, info_hashes, port):
        self.port = port
        root = os.path.join(workdir, "opentracker")
        os.makedirs(root, exist_ok=True)
        os.chmod(root, 0o755)
        with open(os.path.join(root, "whitelist.txt"), "w") as f:
            f.write("".join(h + "\n" for h in info_hashes))
        os.chmod(os.path.join(root, "whitelist.txt"), 0o644)
        conf = os.path.join(workdir, "opentracker.conf")
        with open(conf, "w") as f:
            f.write("listen.tcp_udp 127.0.0.1:%d\naccess.whitelist whitelist.txt\n"
                    "tracker.rootdir %s\ntracker.user nobody\n" % (self.port, root))
        self.proc = Proc("opentracker", ["opentracker", "-f", conf], workdir)
        wait_port(self.port, 10, "opentracker")

    @property
    def url(self):
        return "http://127.0.0.1:%d/announce" % self.port

    def seeders(self, info_hash):
        raw = bytes.fromhex(info_hash)
        q = "".join("%%%02X" % b for b in raw)
        with urllib.request.urlopen("http://127.0.0.1:%d/scrape?info_hash=%s" % (self.port, q),
                                    timeout=5) as r:
            d = lt.bdecode(r.read())
        entry = d.get(b"files", {}).get(raw)
        return entry.get(b"complete", 0) if entry else 0

    def peer_ports(self, info_hash):
        """Ports of the peers it lists now, asked by announcing a probe (port 1, as a leecher)
        that is removed again at once with `stopped`."""
        q = "".join("%%%02X" % b for b in bytes.fromhex(info_hash))
        base = ("http://127.0.0.1:%d/announce?info_hash=%s&peer_id=-BE0000-benchprobe00&port=1"
                "&uploaded=0&downloaded=0&left=1&compact=1&numwant=200&event=" % (self.port, q))
        with urllib.request.urlopen(base + "started", timeout=5) as r:
            d = lt.bdecode(r.read())
        urllib.request.urlopen(base + "stopped", timeout=5).close()
        peers = d.get(b"peers", b"") if d else b""
        return {int.from_bytes(peers[i + 4:i + 6], "big") for i in range(0, len(peers) - 5, 6)} - {1}

    def wait_listed(self, info_hash, port, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port in self.peer_ports(info_hash):
                return
            time.sleep(0.1)
        raise RuntimeError("the tracker does not list port %d for %s after %ds"
                           % (port, info_hash, timeout))

    def wait_seeders(self, info_hash, n, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.seeders(info_hash) >= n:
                return
            time.sleep(0.1)
        raise RuntimeError("seeder did not announce %s within %ds" % (info_hash, timeout))


def make_torrent(data_path, piece_size, announce, out, source=None):
    """A torrent of `data_path`; a different `source` string gives the same data another
    info hash (a swarm of its own at the tracker)."""
    log2 = piece_size.bit_length() - 1
    assert 1 << log2 == piece_size and 15 <= log2 <= 28, "piece size must be 2^15..2^28"
    if os.path.exists(out):
        os.remove(out)
    extra = ["-s", source] if source else []
    subprocess.run(["mktorrent", "-l", str(log2), "-a", announce, "-d", "-o", out] + extra
                   + [data_path], check=True, stdout=subprocess.DEVNULL, timeout=600)
    return str(lt.torrent_info(out).info_hash())


# ---- seeders --------------------------------------------------------------------------------


def proc_cpu_seconds(pid):
    """user + sys CPU seconds of a live process (all its threads), from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of stat(5)); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s in /proc/%d/status" % (field, pid))


def reset_peak_rss(pid):
    """Resets VmHWM to the current RSS (Linux 4.0+); False if that is not allowed here."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class LibtorrentSeeder:
    """tests/scripts/lt_peer.py seed: the Python process is libtorrent (all its threads).
    libtorrent 2.0 maps the data file into memory, so its RSS counts the pages it reads."""
    name = "libtorrent"

    def __init__(self, ctx):
        self.ctx = ctx

    def available(self):
        return True, LT_SCRIPT

    def start(self, torrent, data_dir, logdir):
        self.port = free_port()
        self.proc = Proc("seed-libtorrent", [PYTHON, LT_SCRIPT, "seed", "--torrent", torrent,
                                             "--dir", data_dir, "--port", str(self.port),
                                             "--timeout", "86400"],
                         logdir, stdin=subprocess.PIPE)
        self.proc.wait_line("SEEDING", 600)
        self.pid = self.proc.p.pid

    def stop(self):
        self.proc.stop()


class TesseraSeeder:
    """`tessera-mio seed`: hashes the data first, then announces and serves."""
    name = "tessera-mio"
    binary = "tessera"  # the ctx attribute holding the binary's path

    def __init__(self, ctx):
        self.ctx = ctx

    def available(self):
        path = getattr(self.ctx, self.binary)
        return os.access(path, os.X_OK), path

    def start(self, torrent, data_dir, logdir):
        self.port = free_port()
        self.proc = Proc("seed-" + self.name, [getattr(self.ctx, self.binary), "seed", torrent,
                                               "--data", data_dir,
                                               "--listen", "127.0.0.1:%d" % self.port, "-v"],
                         logdir, env=dict(os.environ, NO_COLOR="1"))
        self.proc.wait_line("pieces verified, seeding", 600, stderr=True)
        self.pid = self.proc.p.pid

    def stop(self):
        self.proc.stop()


class TesseraSmolSeeder(TesseraSeeder):
    """`tessera-smol seed`: the same client on the smol runtime."""
    name = "tessera-smol"
    binary = "tessera_smol"


SEEDERS = {c.name: c for c in (LibtorrentSeeder, TesseraSeeder, TesseraSmolSeeder)}
DEFAULT_SEEDERS = "libtorrent,tessera-mio"

# ---- leechers -------------------------------------------------------------------------------
# command(torrent, out_dir, seeder_port, logdir) -> argv of a process that exits 0 when done.


class TesseraLeecher:
    name = "tessera-mio"
    binary = "tessera"

    def __init__(self, ctx):
        self.ctx = ctx

    def available(self):
        path = getattr(self.ctx, self.binary)
        return os.access(path, os.X_OK), path

    def command(self, torrent, out, seeder_port, logdir):
        return [getattr(self.ctx, self.binary), "download", torrent, "-o", out,
                "--listen", "127.0.0.1:%d" % free_port(), "--peer", "127.0.0.1:%d" % seeder_port]


class RqbitLeecher:
    """rqbit 9.x: `download -e` exits when done. It announces a wrong port unless
    --announce-port goes with --listen-port."""
    name = "rqbit"

    def __init__(self, ctx):
        self.ctx = ctx

    def available(self):
        return self.ctx.rqbit is not None, self.ctx.rqbit or "rqbit not on PATH or in ~/.cargo/bin"

    def command(self, torrent, out, seeder_port, logdir):
        port = str(free_port())
        return [self.ctx.rqbit, "--disable-dht", "--disable-dht-persistence", "--disable-lsd",
                "--disable-upnp-port-forward", "--ipv4-only", "--listen-ip", "127.0.0.1",
                "--listen-port", port, "--announce-port", port,
                "download", "--disable-http-api", "--exit-on-finish", "--overwrite",
                "--initial-peers", "127.0.0.1:%d" % seeder_port, "-o", out, torrent]


class Aria2Leecher:
    """aria2 learns peers from the tracker only; --seed-time=0 exits once verified."""
    name = "aria2"

    def __init__(self, ctx):
        self.ctx = ctx

    def available(self):
        return shutil.which("aria2c") is not None, "aria2c"

    def command(self, torrent, out, seeder_port, logdir):
        return ["aria2c", "--interface=127.0.0.1", "--disable-ipv6=true", "--enable-dht=false",
                "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
                "--listen-port=%d" % free_port(), "--seed-time=0", "--file-allocation=none",
                "--summary-interval=0", "--console-log-level=warn", "--bt-max-peers=0",
                "--stop-with-process=%d" % os.getpid(), "--dir=" + out, torrent]


class LibtorrentLeecher:
    name = "libtorrent"

    def __init__(self, ctx):
        self.ctx = ctx

    def available(self):
        return True, LT_SCRIPT

    def command(self, torrent, out, seeder_port, logdir):
        return [PYTHON, LT_SCRIPT, "leech", "--no-stdin", "--torrent", torrent, "--dir", out,
                "--port", str(free_port()), "--peer", "127.0.0.1:%d" % seeder_port]


class TesseraSmolLeecher(TesseraLeecher):
    name = "tessera-smol"
    binary = "tessera_smol"


LEECHERS = {c.name: c for c in (TesseraLeecher, TesseraSmolLeecher, RqbitLeecher, Aria2Leecher,
                                LibtorrentLeecher)}

# ---- one run --------------------------------------------------------------------------------


def parse_time_v(path):
    """user+sys CPU seconds and peak RSS (KiB) from `/usr/bin/time -v` output."""
    fields = {}
    with open(path, errors="replace") as f:
        for line in f:
            key, _, value = line.strip().rpartition(": ")
            fields[key] = value
    cpu = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
    return cpu, int(fields["Maximum resident set size (kbytes)"])


def allocated_bytes(root):
    """Bytes allocated on disk under `root` (st_blocks), to see a download progress."""
    total = 0
    for d, _, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                pass
    return total


def one_run(ctx, leecher, torrent, piece_size, seeder, run_index):
    tag = "%s-%s-%s-%d" % (seeder.name, leecher.name, human(piece_size).replace(" ", ""),
                           run_index)
    rundir = os.path.join(ctx.workdir, "runs", tag)
    out = os.path.join(rundir, "out")
    os.makedirs(out)
    timefile = os.path.join(rundir, "time.txt")
    argv = ["/usr/bin/time", "-v", "-o", timefile] + leecher.command(
        torrent, out, seeder.port, rundir)
    env = dict(os.environ, HOME=rundir, NO_COLOR="1")
    result = {"client": leecher.name, "piece_size": piece_size, "run": run_index,
              "size": ctx.size, "argv": argv[4:], "seeder": seeder.name}
    # Start clean: the previous run's dirty pages (clients that exit without fsyncing leave
    # up to the whole download in the page cache) would otherwise be written back during
    # this run and slow it down. Outside the timed part.
    os.sync()
    hwm_reset = reset_peak_rss(seeder.pid)
    seeder_cpu0 = proc_cpu_seconds(seeder.pid)
    start = time.monotonic()
    proc = Proc("leech", argv, rundir, env=env)
    # Wait for the exit; give up at the timeout, or once nothing was written for
    # --stall-timeout seconds (a leecher the seeder cut off may otherwise wait forever).
    last_size, last_change = -1, start
    while proc.p.poll() is None:
        now = time.monotonic()
        size = allocated_bytes(out)
        if size != last_size:
            last_size, last_change = size, now
        if now - start > ctx.timeout or now - last_change > ctx.stall_timeout:
            proc.stop()
            why = ("timeout after %ds" % ctx.timeout if now - start > ctx.timeout else
                   "stalled: nothing written for %ds (%d bytes on disk)"
                   % (ctx.stall_timeout, size))
            result.update(ok=False, error=why, tail=proc.tail())
            return result
        time.sleep(0.05)
    seconds = time.monotonic() - start
    if seeder.proc.p.poll() is not None:
        raise RuntimeError("the %s seeder exited (%s)\n%s"
                           % (seeder.name, seeder.proc.p.returncode, seeder.proc.tail()))
    result.update(seeder_cpu_s=proc_cpu_seconds(seeder.pid) - seeder_cpu0,
                  seeder_peak_rss_mib=proc_status_kib(seeder.pid, "VmHWM") / 1024,
                  seeder_rss_reset=hwm_reset)
    proc.stop()
    if proc.p.returncode != 0:
        result.update(ok=False, error="exit status %d" % proc.p.returncode, tail=proc.tail())
        return result
    cpu, rss_kib = parse_time_v(timefile)
    result.update(seconds=seconds, mib_per_s=ctx.size / (1 << 20) / seconds, cpu_s=cpu,
                  peak_rss_mib=rss_kib / 1024)
    got = os.path.join(out, ctx.data_name)
    if not ctx.no_verify:
        digest = file_sha1(got) if os.path.exists(got) else None
        if digest != ctx.data_sha1:
            result.update(ok=False, error="downloaded data differs (sha1 %s)" % digest)
            return result
    result["ok"] = True
    shutil.rmtree(out, ignore_errors=True)
    return result


# ---- main -----------------------------------------------------------------------------------


def find_rqbit():
    for cand in (shutil.which("rqbit"), os.path.expanduser("~/.cargo/bin/rqbit")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def table(results, runs):
    rows = ["| seeder | leecher | piece size | median MiB/s | leecher CPU s / GiB "
            "| leecher peak RSS MiB | seeder CPU s / GiB | seeder peak RSS MiB | runs |",
            "|---|---|---|---:|---:|---:|---:|---:|---|"]
    keys = []
    for r in results:
        k = (r["seeder"], r["client"], r["piece_size"])
        if k not in keys:
            keys.append(k)
    for seeder, client, piece in keys:
        rs = [r for r in results
              if (r["seeder"], r["client"], r["piece_size"]) == (seeder, client, piece)]
        ok = [r for r in rs if r["ok"]]
        if ok:
            gib = ok[0]["size"] / (1 << 30)
            rows.append("| %s | %s | %s | %.0f | %.2f | %.0f | %.2f | %.0f | %d/%d |" % (
                seeder, client, human(piece), statistics.median(r["mib_per_s"] for r in ok),
                statistics.median(r["cpu_s"] for r in ok) / gib,
                max(r["peak_rss_mib"] for r in ok),
                statistics.median(r["seeder_cpu_s"] for r in ok) / gib,
                max(r["seeder_peak_rss_mib"] for r in ok), len(ok), len(rs)))
        else:
            rows.append("| %s | %s | %s | failed | | | | | 0/%d |"
                        % (seeder, client, human(piece), len(rs)))
    return "\n".join(rows)


def ratios(results):
    """Speed ratios of pairs of rows, run by run (the runs of a pair are neighbours in
    time), as median and range: each leecher against libtorrent's from the same seeder,
    and each seeder -> the same client against libtorrent -> libtorrent."""
    speed = {(r["piece_size"], r["seeder"], r["client"], r["run"]): r["mib_per_s"]
             for r in results if r["ok"]}
    lines = []

    def ratio(label, a, b):
        pairs = sorted(speed[a[:3] + (i,)] / speed[b[:3] + (i,)]
                       for i in {k[3] for k in speed}
                       if a[:3] + (i,) in speed and b[:3] + (i,) in speed)
        if pairs:
            lines.append("- %s: %.2fx (%.2f-%.2f, %d runs)" % (
                label, statistics.median(pairs), pairs[0], pairs[-1], len(pairs)))

    rows = sorted({k[:3] for k in speed}, key=lambda k: (k[0], k[1] != "libtorrent", k[1], k[2]))
    for piece, seeder, client in rows:
        if client != "libtorrent":
            ratio("%s, %s -> %s against %s -> libtorrent" % (human(piece), seeder, client, seeder),
                  (piece, seeder, client), (piece, seeder, "libtorrent"))
        if seeder != "libtorrent" and client.startswith("tessera"):
            ratio("%s, %s -> %s against libtorrent -> libtorrent" % (human(piece), seeder, client),
                  (piece, seeder, client), (piece, "libtorrent", "libtorrent"))
    return "Ratios of MiB/s, run by run:\n" + "\n".join(lines) if lines else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=parse_size, default=1 << 30, help="default 1GiB")
    ap.add_argument("--pieces", default="256KiB,1MiB", help="comma-separated piece sizes")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--leechers", default=",".join(LEECHERS),
                    help="comma-separated, from: " + ", ".join(LEECHERS))
    ap.add_argument("--seeders", default=DEFAULT_SEEDERS,
                    help="comma-separated, from: %s (all run at once; see above)"
                    % ", ".join(SEEDERS))
    ap.add_argument("--seeder", choices=sorted(SEEDERS), help="one seeder only (old spelling)")
    ap.add_argument("--tessera", default=os.path.join(REPO, "target", "release", "tessera-mio"),
                    help="the tessera-mio binary (build it with cargo build --release first)")
    ap.add_argument("--tessera-smol", dest="tessera_smol",
                    default=os.path.join(REPO, "target", "release", "tessera-smol"),
                    help="the tessera-smol binary")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per download")
    ap.add_argument("--stall-timeout", type=int, default=60,
                    help="give a download up when nothing was written for this many seconds")
    ap.add_argument("--workdir", help="default: a new temp dir, removed at the end")
    ap.add_argument("--no-verify", action="store_true", help="skip the SHA-1 check of downloads")
    ctx = ap.parse_args()
    ctx.rqbit = find_rqbit()
    pieces = [parse_size(p) for p in ctx.pieces.split(",")]

    leechers = []
    for name in ctx.leechers.split(","):
        if name not in LEECHERS:
            ap.error("unknown leecher %r" % name)
        leecher = LEECHERS[name](ctx)
        ok, what = leecher.available()
        if ok:
            leechers.append(leecher)
        else:
            log("skipping %s: %s not found" % (name, what))
    if not leechers:
        ap.error("no leecher available")
    seeders = []
    for name in (ctx.seeder or ctx.seeders).split(","):
        if name not in SEEDERS:
            ap.error("unknown seeder %r" % name)
        ok, what = SEEDERS[name](ctx).available()
        if ok:
            seeders.append(name)
        else:
            log("skipping the %s seeder: %s not found" % (name, what))
    if not seeders:
        ap.error("no seeder available")
    load_before = os.getloadavg()

    own_workdir = ctx.workdir is None
    ctx.workdir = ctx.workdir or tempfile.mkdtemp(prefix="tessera-bench-")
    os.makedirs(ctx.workdir, exist_ok=True)
    results = []
    try:
        seed_dir = os.path.join(ctx.workdir, "seed")
        os.makedirs(seed_dir, exist_ok=True)
        ctx.data_name = "bench-%s.bin" % human(ctx.size).replace(" ", "")
        data_path = os.path.join(seed_dir, ctx.data_name)
        log("writing %s of pseudo-random data to %s" % (human(ctx.size), data_path))
        ctx.data_sha1 = make_data(data_path, ctx.size)

        # The tracker must know every info hash before it starts: make the torrents with its
        # URL first (its port is chosen up front). Each seeder gets a torrent of its own (the
        # same data, another info hash), so that all the seeders can run at once and a
        # leecher that asks the tracker still finds only its seeder.
        tracker_port = free_port()
        url = "http://127.0.0.1:%d/announce" % tracker_port
        torrents = {}
        for piece in pieces:
            for name in seeders:
                path = os.path.join(ctx.workdir, "bench-%d-%s.torrent" % (piece, name))
                torrents[piece, name] = (path, make_torrent(data_path, piece, url, path,
                                                            source="bench-" + name))
        tracker = Opentracker(ctx.workdir, [h for _, h in torrents.values()], tracker_port)

        for piece in pieces:
            running = []
            try:
                for name in seeders:
                    torrent, info_hash = torrents[piece, name]
                    seeder = SEEDERS[name](ctx)
                    log("piece size %s: starting the %s seeder" % (human(piece), seeder.name))
                    seeder.start(torrent, seed_dir, ctx.workdir)
                    running.append(seeder)
                    tracker.wait_listed(info_hash, seeder.port, 60)
                # Runs interleaved (run 1 of every pair, then run 2...): this machine's speed
                # drifts by up to 2x from one minute to the next, and the pairs are compared.
                for i in range(ctx.runs):
                    for seeder in running:
                        torrent, _ = torrents[piece, seeder.name]
                        for leecher in leechers:
                            r = one_run(ctx, leecher, torrent, piece, seeder, i)
                            results.append(r)
                            if r["ok"]:
                                log("%s -> %s %s run %d: %.1f s, %.0f MiB/s, CPU %.1f s, "
                                    "RSS %.0f MiB; seeder CPU %.1f s, peak RSS %.0f MiB" % (
                                        seeder.name, leecher.name, human(piece), i,
                                        r["seconds"], r["mib_per_s"], r["cpu_s"],
                                        r["peak_rss_mib"], r["seeder_cpu_s"],
                                        r["seeder_peak_rss_mib"]))
                            else:
                                log("%s -> %s %s run %d FAILED: %s\n%s" % (
                                    seeder.name, leecher.name, human(piece), i, r["error"],
                                    r.get("tail", "")))
            finally:
                for seeder in running:
                    seeder.stop()
    finally:
        Proc.stop_all()
        if own_workdir:
            shutil.rmtree(ctx.workdir, ignore_errors=True)

    load_after = os.getloadavg()
    print("Loopback download, %s single file, %d runs each, %s; load average %.1f before, "
          "%.1f after (%d CPUs)\n" % (human(ctx.size), ctx.runs, time.strftime("%Y-%m-%d"),
                                     load_before[0], load_after[0], os.cpu_count()))
    print(table(results, ctx.runs))
    print()
    print(ratios(results))
    os.makedirs(RESULTS_DIR, exist_ok=True)
    out = os.path.join(RESULTS_DIR, "loopback-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(out, "w") as f:
        json.dump({"size": ctx.size, "seeders": seeders, "runs": ctx.runs,
                   "host_cpus": os.cpu_count(), "load_before": load_before,
                   "load_after": load_after, "results": results}, f, indent=1)
    print("\nraw results: %s" % os.path.relpath(out, REPO))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        Proc.stop_all()
        sys.exit(130)
