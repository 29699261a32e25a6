//! Full and read-only directories, for disk-error tests. The tests run as root, where
//! permissions stop nothing, so:
//!
//! - **full**: a small tmpfs mounted on the directory (`mount -t tmpfs -o size=N`), grown
//!   later with `mount -o remount,size=M`. Writes past the size fail with ENOSPC. Where
//!   mounting is not permitted, [`FileSizeLimit`] is the fallback: the process runs under
//!   `prlimit --fsize=N` with SIGXFSZ ignored (an ignored signal stays ignored across
//!   `exec`), so a write past N bytes in one file fails with EFBIG instead of killing it.
//! - **read-only**: a read-only bind mount of the directory on itself (`mount --bind`, then
//!   `mount -o remount,bind,ro`): writes fail with EROFS. The fallback is `chattr -R +i`
//!   (immutable: EPERM even for root), undone with `chattr -R -i`.
//!
//! Checked on the development machine (Debian, root in a container with CAP_SYS_ADMIN):
//! all four work. Every guard undoes itself on drop, each command bounded in time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::run_small;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let (status, _, err) = run_small(&mut cmd, COMMAND_TIMEOUT);
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {args:?}: {status}: {}", err.trim()))
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A tmpfs mounted on a directory; unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs {
    target: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` on `target` (created if needed), or says why not.
    pub fn mount(target: &Path, bytes: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(target).map_err(|e| e.to_string())?;
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes}"),
                "tmpfs",
                s(target),
            ],
        )?;
        Ok(Tmpfs {
            target: target.to_owned(),
        })
    }

    /// Changes the size, keeping the contents.
    pub fn resize(&self, bytes: u64) {
        run(
            "mount",
            &["-o", &format!("remount,size={bytes}"), s(&self.target)],
        )
        .unwrap_or_else(|e| panic!("growing the tmpfs: {e}"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = run("umount", &[s(&self.target)]) {
            eprintln!("tessera-tests: {e}; lazy unmount");
            let _ = run("umount", &["-l", s(&self.target)]);
        }
    }
}

/// `prlimit --fsize=N` around a command, with SIGXFSZ ignored.
#[derive(Debug, Clone, Copy)]
pub struct FileSizeLimit(pub u64);

impl FileSizeLimit {
    /// `cmd` wrapped: `sh -c 'trap "" XFSZ; exec prlimit --fsize=N:N -- "$@"' sh <cmd...>`.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut wrapped = Command::new("sh");
        wrapped
            .arg("-c")
            .arg(format!(
                "trap '' XFSZ; exec prlimit --fsize={0}:{0} -- \"$@\"",
                self.0
            ))
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped
    }
}

/// A directory made read-only; writable again on drop.
#[derive(Debug)]
pub struct ReadOnly {
    target: PathBuf,
    how: ReadOnlyHow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOnlyHow {
    BindMount,
    Immutable,
}

impl ReadOnly {
    /// Makes `target` read-only for everyone, root included, by a read-only bind mount or,
    /// failing that, the immutable attribute.
    pub fn make(target: &Path) -> Result<ReadOnly, String> {
        let t = s(target);
        let bind = run("mount", &["--bind", t, t]).and_then(|()| {
            run("mount", &["-o", "remount,bind,ro", t]).inspect_err(|_| {
                let _ = run("umount", &[t]);
            })
        });
        match bind {
            Ok(()) => Ok(ReadOnly {
                target: target.to_owned(),
                how: ReadOnlyHow::BindMount,
            }),
            Err(mount_error) => match run("chattr", &["-R", "+i", t]) {
                Ok(()) => Ok(ReadOnly {
                    target: target.to_owned(),
                    how: ReadOnlyHow::Immutable,
                }),
                Err(e) => Err(format!("{mount_error}; {e}")),
            },
        }
    }

    pub fn how(&self) -> ReadOnlyHow {
        self.how
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let t = s(&self.target);
        let undone = match self.how {
            ReadOnlyHow::BindMount => run("umount", &[t]),
            ReadOnlyHow::Immutable => run("chattr", &["-R", "-i", t]),
        };
        if let Err(e) = undone {
            eprintln!("tessera-tests: cannot make {t} writable again: {e}");
        }
    }
}
