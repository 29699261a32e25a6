//! Running `tessera-smol` and `tessera-mio` as a user would, for the binary tests.
//!
//! `tessera-smol` is this package's binary (`CARGO_BIN_EXE_tessera-smol`). `tessera-mio`
//! belongs to another package, so [`mio`] builds it on first use with
//! `$CARGO build --profile <this test's profile> -p tessera-mio --bin tessera-mio` into the
//! same target directory (cargo releases its lock before running tests; the build reuses
//! what `cargo test` compiled and is a no-op when `tessera-mio` is fresh, so a stale binary
//! is never tested). Set `TESSERA_MIO=/path/to/tessera-mio` to test a prebuilt one instead.

// Test code: a failed setup step should panic (clippy.toml allows it in #[test]s only).
#![allow(clippy::unwrap_used, dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const SMOL: &str = env!("CARGO_BIN_EXE_tessera-smol");

/// Longest the nested build of `tessera-mio` may take.
const BUILD_LIMIT: Duration = Duration::from_secs(20 * 60);

/// The `tessera-mio` binary of this test's profile, built if needed (once per process).
pub fn mio() -> &'static Path {
    static MIO: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match MIO.get_or_init(build_mio) {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

fn build_mio() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TESSERA_MIO") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("TESSERA_MIO={} does not exist", path.display()))
        };
    }
    // <target dir>/<profile dir>/deps/<this test>
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("unexpected test executable path")?;
    let target_dir = profile_dir.parent().ok_or("no target directory")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => return Err(format!("no profile in {}", exe.display())),
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let log_path = target_dir.join("tessera-smol-tests-build-mio.log");
    let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut child = Command::new(env!("CARGO"))
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "--profile", profile, "-p", "tessera-mio"])
        .args(["--bin", "tessera-mio"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("running cargo: {e}"))?;
    let status = wait_exit(&mut child, BUILD_LIMIT);
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => return Err(format!("building tessera-mio failed ({s}):\n{log}")),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("building tessera-mio took over {BUILD_LIMIT:?}"));
        }
    }
    let path = profile_dir.join("tessera-mio");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "cargo built tessera-mio, but not at {}",
            path.display()
        ))
    }
}

/// Runs `bin` with `args` in `cwd` to completion (bounded by the commands themselves:
/// none of the ones used here waits on the network).
pub fn run(bin: &Path, args: &[&str], cwd: &Path) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Exit code 1 with exactly one line on stderr, `error: ...` containing `needle`.
pub fn assert_one_line_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
}

/// Kills a child on drop (by its PID, through `Child::kill`).
#[derive(Debug)]
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaper {
    /// Sends SIGINT, as Ctrl-C does.
    pub fn interrupt(&self) {
        let pid = self.0.id().to_string();
        let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(status.success(), "kill -INT {pid}");
    }
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Deterministic bytes, different for each `k`.
pub fn bytes(n: usize, k: usize) -> Vec<u8> {
    (0..n).map(|i| (i * k + i / 13 + k) as u8).collect()
}

/// Files of odd sizes, one of them empty, two levels deep, under `root`; their paths
/// relative to `root`'s parent.
pub fn sample_data(root: &Path) -> Vec<String> {
    let name = root.file_name().unwrap().to_str().unwrap().to_owned();
    let files: [(&str, usize); 5] = [
        ("a.bin", 100_000),
        ("sub/b.bin", 33_333),
        ("sub/empty", 0),
        ("sub/deeper/c.bin", 1),
        ("z.bin", 1_048_583),
    ];
    for (i, (rel, len)) in files.iter().enumerate() {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes(*len, i + 7)).unwrap();
    }
    files
        .iter()
        .map(|(rel, _)| format!("{name}/{rel}"))
        .collect()
}

/// Output of a child goes to a file in `dir` (a pipe nobody reads could block it).
pub fn log_file(dir: &Path, name: &str) -> Stdio {
    Stdio::from(fs::File::create(dir.join(name)).unwrap())
}

pub fn read_log(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// Starts `bin seed torrent --data data --listen 127.0.0.1:<port>` in `dir` and waits
/// (bounded) until it has checked its data (it listens from before the check). Logs go to
/// `<label>.out` and `<label>.err`.
pub fn start_seeder(
    bin: &Path,
    dir: &Path,
    torrent: &str,
    data: &str,
    label: &str,
) -> (Reaper, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let out = format!("{label}.out");
    let err = format!("{label}.err");
    let child = Command::new(bin)
        .args(["seed", torrent, "--data", data, "--listen", &listen])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log_file(dir, &out))
        .stderr(log_file(dir, &err))
        .spawn()
        .unwrap();
    let mut seeder = Reaper(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = read_log(dir, &err);
        if log.contains("seeding (Ctrl-C to stop)") {
            break;
        }
        if let Some(status) = seeder.0.try_wait().unwrap() {
            panic!("seeder exited with {status}: {log}");
        }
        assert!(Instant::now() < deadline, "seeder not ready: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
    (seeder, port)
}
