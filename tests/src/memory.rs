//! A process's resident memory, from `/proc/<pid>/status`, sampled on a thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// `VmRSS` of `pid` in bytes, `None` once the process is gone.
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples a process's RSS every 10 ms until dropped; keeps the largest value.
#[derive(Debug)]
pub struct RssSampler {
    max: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let max = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, n, st) = (max.clone(), samples.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                if let Some(r) = rss(pid) {
                    m.fetch_max(r, Ordering::SeqCst);
                    n.fetch_add(1, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        RssSampler {
            max,
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// The largest RSS seen so far, in bytes.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::SeqCst)
    }

    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::SeqCst)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
