//! Locating Tessera's binaries from inside `cargo test`.
//!
//! `cargo test --workspace --profile ci` builds test harnesses, not the other packages' plain
//! binaries, so the first test that needs `tessera-mio` runs, once per test process,
//!
//! ```text
//! $CARGO build --profile <profile of this test exe> -p tessera-mio --bin tessera-mio \
//!       --message-format=json-render-diagnostics
//! ```
//!
//! from the workspace root and takes the binary's path from cargo's `compiler-artifact`
//! message. This is safe inside `cargo test`: cargo releases its build-directory lock before
//! it runs test executables (checked with cargo 1.95), and the nested build reuses the
//! dependencies `cargo test` just compiled with the same profile, so it costs seconds. Running
//! it every time (rather than only when the file is missing) also means a stale binary is
//! never tested. Cargo's messages are shown if the build fails.
//!
//! Set `TESSERA_BIN_DIR=/some/dir` to test prebuilt binaries instead (no build is run).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longest a nested build may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The `tessera-mio` binary (package `tessera-mio`), built if needed.
pub fn tessera_mio() -> PathBuf {
    binary("tessera-mio", "tessera-mio")
}

/// The `tessera-smol` binary (package `tessera-smol`), built if needed.
pub fn tessera_smol() -> PathBuf {
    binary("tessera-smol", "tessera-smol")
}

/// Path to binary `bin` of package `package`, built at most once per process. Panics with
/// the build's failure if it cannot be built.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, Result<PathBuf, String>>>> = Mutex::new(None);
    let mut guard = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    let built = guard.get_or_insert_with(HashMap::new);
    let result = built
        .entry(bin.to_owned())
        .or_insert_with(|| locate_or_build(package, bin));
    match result {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn locate_or_build(package: &str, bin: &str) -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("TESSERA_BIN_DIR") {
        let path = Path::new(&dir).join(bin);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "TESSERA_BIN_DIR is set but {} does not exist",
                path.display()
            ))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // <target>/<profile dir>/deps/<test exe>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected test executable path {}", exe.display()))?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(name) => name.to_owned(),
        None => return Err(format!("no profile dir in {}", exe.display())),
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args(["build", "--profile", &profile, "-p", package, "--bin", bin])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("tessera-tests: building {bin}: {cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cargo:?}: {e}"))?;
    // Drain both pipes on threads so a chatty build cannot block on them.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let reader = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let diagnostics = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + BUILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("building {bin} took over {BUILD_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let messages = reader.join().unwrap_or_default();
    let diagnostics = diagnostics.join().unwrap_or_default();
    if !status.success() {
        let lines: Vec<&str> = diagnostics.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        return Err(format!(
            "building {bin} failed ({status}): {cmd:?}\n--- cargo's stderr (tail) ---\n{tail}"
        ));
    }
    let path = executable_from_messages(&messages, bin).unwrap_or_else(|| profile_dir.join(bin));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "cargo built {bin} but {} does not exist",
            path.display()
        ))
    }
}

/// Finds `"executable":"..."` in the `compiler-artifact` message of target `bin`.
fn executable_from_messages(messages: &str, bin: &str) -> Option<PathBuf> {
    let name = format!("\"name\":\"{bin}\"");
    messages
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains(&name))
        .find_map(|l| {
            let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let rest = &l[start..];
            let end = rest.find('"')?;
            Some(PathBuf::from(rest[..end].replace("\\\\", "\\")))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let msgs = concat!(
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"tessera_core"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"tessera-mio"},"executable":"/t/release/tessera-mio","fresh":true}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            executable_from_messages(msgs, "tessera-mio"),
            Some(PathBuf::from("/t/release/tessera-mio"))
        );
        assert_eq!(executable_from_messages(msgs, "tessera-smol"), None);
    }
}
