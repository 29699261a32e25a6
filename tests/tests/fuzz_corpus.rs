//! Every input committed in the fuzz corpora (`fuzz/corpus/<target>/`) replayed through its
//! fuzz target's body, as a plain test: a parser change that makes a seed or a past finding
//! panic, or break a target's promise, fails the test command, not only a later fuzz run.
//!
//! The bodies are the fuzz targets' own (`fuzz/src/targets/`, included here by path), run as
//! the fuzz binaries run them, built with the test command's profile (debug assertions and
//! overflow checks on, as under `cargo fuzz run -a`). See fuzz/README.md.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/targets/mod.rs"]
mod targets;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

/// The files of one corpus directory, sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_passes_its_target() {
    let root = corpus_root();
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (name, run) in targets::ALL {
        let dir = root.join(name);
        let files = inputs(&dir);
        assert!(
            !files.is_empty(),
            "fuzz target {name} has no seed in {}",
            dir.display()
        );
        for file in files {
            let data = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| run(&data))) {
                let msg = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)")
                    .to_owned();
                failures.push(format!("{name}: {}: {msg}", file.display()));
            }
            replayed += 1;
        }
    }
    eprintln!(
        "replayed {replayed} corpus inputs through {} targets",
        targets::ALL.len()
    );
    assert!(
        failures.is_empty(),
        "{} corpus input(s) fail their fuzz target:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A corpus directory without a target would never be replayed: every one has its target.
#[test]
fn every_corpus_directory_has_a_target() {
    let mut dirs: Vec<String> = fs::read_dir(corpus_root())
        .expect("fuzz/corpus")
        .map(|e| e.expect("directory entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let known: Vec<&str> = targets::ALL.iter().map(|(name, _)| *name).collect();
    let orphans: Vec<&String> = dirs
        .iter()
        .filter(|d| !known.contains(&d.as_str()))
        .collect();
    assert!(
        orphans.is_empty(),
        "fuzz/corpus/{orphans:?} have no target in fuzz/src/targets (targets: {known:?})"
    );
}
