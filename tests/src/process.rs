//! Child processes the tests start: output captured to files, every wait bounded, and stopped by
//! PID on drop (SIGTERM, then SIGKILL after a short grace period).

use std::fs::{self, File};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a process gets between SIGTERM and SIGKILL when it is stopped.
const GRACE: Duration = Duration::from_secs(3);
/// How often the bounded waits look again.
const POLL: Duration = Duration::from_millis(20);
/// How much of each captured stream a failure message shows.
const TAIL_LINES: usize = 25;

/// Which captured stream a wait looks at.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// A spawned process with its stdout and stderr captured to `<log dir>/<name>.{stdout,stderr}`.
///
/// Dropping it stops the process: SIGTERM by PID, SIGKILL after [`GRACE`], then reaps it.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    exit: Option<ExitStatus>,
    /// Lines of stdout already returned by [`Proc::wait_for_line`].
    stdout_cursor: usize,
    /// Lines of stderr already returned by [`Proc::wait_for_stderr_line`].
    stderr_cursor: usize,
}

impl Proc {
    /// Spawns `cmd` with stdin closed (/dev/null).
    pub fn spawn(name: &str, cmd: Command, log_dir: &Path) -> Proc {
        Self::spawn_inner(name, cmd, log_dir, false)
    }

    /// Spawns `cmd` with a pipe on stdin, for [`Proc::send_line`]. Dropping the `Proc` closes
    /// the pipe, which our scripts take as "the harness is gone, exit".
    pub fn spawn_with_stdin(name: &str, cmd: Command, log_dir: &Path) -> Proc {
        Self::spawn_inner(name, cmd, log_dir, true)
    }

    fn spawn_inner(name: &str, mut cmd: Command, log_dir: &Path, piped_stdin: bool) -> Proc {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        fs::create_dir_all(log_dir)
            .unwrap_or_else(|e| panic!("cannot create log dir {}: {e}", log_dir.display()));
        let base = format!("{seq:02}-{name}");
        let stdout_path = log_dir.join(format!("{base}.stdout"));
        let stderr_path = log_dir.join(format!("{base}.stderr"));
        let out = File::create(&stdout_path).expect("create stdout capture file");
        let err = File::create(&stderr_path).expect("create stderr capture file");
        cmd.stdout(out).stderr(err);
        cmd.stdin(if piped_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdin = child.stdin.take();
        Proc {
            name: name.to_owned(),
            child,
            stdin,
            stdout_path,
            stderr_path,
            exit: None,
            stdout_cursor: 0,
            stderr_cursor: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The last lines of stdout and stderr, for failure messages.
    pub fn tail(&self) -> String {
        fn last_lines(text: &str) -> String {
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(TAIL_LINES);
            lines[from..].join("\n")
        }
        format!(
            "--- {} (pid {}) stdout tail, {} ---\n{}\n--- stderr tail, {} ---\n{}\n--- end ---",
            self.name,
            self.pid(),
            self.stdout_path.display(),
            last_lines(&self.stdout()),
            self.stderr_path.display(),
            last_lines(&self.stderr()),
        )
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name));
        }
        self.exit
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits at most `timeout` for the process to exit; panics with the output tails if it
    /// does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} (pid {}) did not exit within {:?}\n{}",
                    self.name,
                    self.pid(),
                    timeout,
                    self.tail()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Waits at most `timeout` for the process to exit with status 0; panics otherwise.
    pub fn wait_success(&mut self, timeout: Duration) {
        let status = self.wait_exit(timeout);
        assert!(
            status.success(),
            "{} (pid {}) failed: {status}\n{}",
            self.name,
            self.pid(),
            self.tail()
        );
    }

    /// Waits at most `timeout` for a new stdout line containing `needle` and returns it. Lines
    /// returned once are not looked at again, so the same needle can be awaited repeatedly.
    /// Panics if the process exits first or the time runs out.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_line_in(Stream::Stdout, needle, timeout)
    }

    /// [`Proc::wait_for_line`] for stderr (where Tessera's messages and logs go), with a
    /// cursor of its own.
    pub fn wait_for_stderr_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_line_in(Stream::Stderr, needle, timeout)
    }

    fn wait_for_line_in(&mut self, stream: Stream, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let (out, cursor) = match stream {
                Stream::Stdout => (self.stdout(), self.stdout_cursor),
                Stream::Stderr => (self.stderr(), self.stderr_cursor),
            };
            // Only complete lines: the writer may be in the middle of one.
            let complete = match out.rfind('\n') {
                Some(i) => &out[..=i],
                None => "",
            };
            for (i, line) in complete.lines().enumerate().skip(cursor) {
                if line.contains(needle) {
                    match stream {
                        Stream::Stdout => self.stdout_cursor = i + 1,
                        Stream::Stderr => self.stderr_cursor = i + 1,
                    }
                    return line.to_owned();
                }
            }
            if let Some(status) = self.try_status() {
                panic!(
                    "{} exited ({status}) before printing a line with {needle:?} on {stream:?}\n{}",
                    self.name,
                    self.tail()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} (pid {}) printed no line with {needle:?} on {stream:?} within {timeout:?}\n{}",
                    self.name,
                    self.pid(),
                    self.tail()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Writes one line to the process's stdin (only for [`Proc::spawn_with_stdin`]).
    pub fn send_line(&mut self, line: &str) {
        let name = self.name.clone();
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{name} was spawned without a stdin pipe"));
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("writing {line:?} to {name}: {e}\n{}", self.tail()));
    }

    /// Sends a signal by PID with the `kill` command, if the process has not exited yet (an
    /// unreaped child keeps its PID, so this never hits another process).
    pub fn signal(&mut self, signal: &str) {
        if self.is_running() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(self.pid().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Stops the process: closes stdin, SIGTERM, SIGKILL after [`GRACE`], reaps it.
    pub fn stop(&mut self) -> ExitStatus {
        self.stdin = None;
        if let Some(status) = self.try_status() {
            return status;
        }
        self.signal("TERM");
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.try_status() {
                return status;
            }
            thread::sleep(POLL);
        }
        let _ = self.child.kill(); // SIGKILL to this PID
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("reaping {}: {e}", self.name));
        self.exit = Some(status);
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a short command to completion within `timeout`, returning its stdout; panics with its
/// output if it fails or overruns.
pub fn run(name: &str, cmd: Command, log_dir: &Path, timeout: Duration) -> String {
    let mut proc = Proc::spawn(name, cmd, log_dir);
    proc.wait_success(timeout);
    proc.stdout()
}

/// A loopback port that was free for both TCP and UDP a moment ago.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`, usually 32768-60999)
/// when there is room: a port handed out by binding port 0 comes from that range, and can be
/// reused as the local port of some outgoing connection before our server binds it. Checked
/// by binding it (then dropped); falls back to binding port 0.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOW: u16 = 10_000;
    if ephemeral_low > LOW + 1000 {
        let span = usize::from(ephemeral_low - LOW);
        // Start somewhere different in each process so parallel test binaries rarely collide.
        let start = (std::process::id() as usize).wrapping_mul(7919) % span;
        for _ in 0..span {
            let i = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = LOW + u16::try_from((start + i * 7) % span).expect("port fits u16");
            if port_is_free(port) {
                return port;
            }
        }
    }
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = tcp.local_addr().expect("local_addr").port();
        drop(tcp);
        if port_is_free(port) {
            return port;
        }
    }
    panic!("no loopback port free for both TCP and UDP");
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// Waits at most `timeout` until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what}: nothing accepted connections on {addr} within {timeout:?}"
        );
        thread::sleep(POLL);
    }
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL * 5);
    }
}

/// Runs a command to completion within `timeout` and returns `(status, stdout, stderr)`,
/// collected through pipes drained on threads; kills it by PID and panics if it overruns.
pub fn run_small(cmd: &mut Command, timeout: Duration) -> (ExitStatus, String, String) {
    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> thread::JoinHandle<String> {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        thread::sleep(POLL);
    };
    (
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...), in KiB; `None` once the
/// process is gone.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The resident set size of `pid` now, in KiB.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// Follows a process's peak memory: reads `VmHWM` (the kernel's high-water mark of its
/// resident set, so a spike between two readings is not missed) and `VmRSS` from
/// `/proc/<pid>/status` on a thread every `every` until stopped, and once more when
/// stopped if the process is still there. For a process that has exited by then, the last
/// reading is at most `every` before its exit.
#[derive(Debug)]
pub struct RssSampler {
    pid: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<RssSamples>>,
}

/// What an [`RssSampler`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RssSamples {
    /// Readings taken while the process was alive.
    pub samples: u64,
    /// The first `VmRSS` reading, in KiB.
    pub first_kib: u64,
    /// The largest `VmRSS` reading, in KiB.
    pub max_kib: u64,
    /// The last (so largest) `VmHWM` reading: the process's peak resident set, in KiB.
    pub peak_kib: u64,
}

impl RssSamples {
    fn read(&mut self, pid: u32) {
        let (Some(rss), Some(hwm)) = (vm_rss_kib(pid), status_kib(pid, "VmHWM")) else {
            return; // gone, or a zombie (its status has no memory fields)
        };
        if self.samples == 0 {
            self.first_kib = rss;
        }
        self.samples += 1;
        self.max_kib = self.max_kib.max(rss);
        self.peak_kib = self.peak_kib.max(hwm);
    }
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut seen = RssSamples::default();
            while !flag.load(Ordering::SeqCst) {
                seen.read(pid);
                thread::sleep(every);
            }
            seen
        });
        RssSampler {
            pid,
            stop,
            thread: Some(thread),
        }
    }

    /// The readings so far, and a last one if the process is still there; ends the
    /// sampling.
    pub fn finish(mut self) -> RssSamples {
        self.end()
    }

    fn end(&mut self) -> RssSamples {
        self.stop.store(true, Ordering::SeqCst);
        let Some(t) = self.thread.take() else {
            return RssSamples::default();
        };
        let mut seen = t.join().unwrap_or_default();
        seen.read(self.pid);
        seen
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.end();
    }
}
