//! A fixed pool of worker threads for blocking work: the core's disk actions, hashing for
//! `create`, and host-name resolution (`Target::Host`).
//!
//! Results go to a queue that the event loop drains ([`DiskPool::drain`]); after each one
//! the caller-supplied wake-up runs (a `mio::Waker`, an async notification...), so the loop
//! learns about it while it sleeps. Blocking callers (`verify`, `create`) use
//! [`DiskPool::wait`] instead.
//!
//! After a write, the worker that ran it flushes the storage's written data when that is
//! due ([`Storage::writeback`]), once the write's completion is queued: the flush keeps
//! that worker, not the write's answer, waiting.
//!
//! The job queue is unbounded on purpose: the core bounds what it asks for (buffered
//! bytes for writes, queued peer requests for reads, its checking window for verifies) and
//! the offline commands submit one small job per piece, so back-pressure here would only
//! duplicate the core's.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tessera_core::{Bitfield, ConnId, DiskError, DiskErrorKind, DiskResult, FileSpan, OpId};

use crate::resume;
use crate::storage::Storage;

/// Called after every completion; must be cheap and must not block.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Work for the pool.
pub enum Job {
    /// `Action::Write`.
    Write {
        op: OpId,
        storage: Arc<Storage>,
        piece: u32,
        offset: u32,
        data: Vec<Bytes>,
        spans: Vec<FileSpan>,
        expected: Option<[u8; 20]>,
    },
    /// `Action::Verify`.
    Verify {
        op: OpId,
        storage: Arc<Storage>,
        spans: Vec<FileSpan>,
        expected: [u8; 20],
    },
    /// `Action::Read` (`len` bytes covered by `spans`).
    Read {
        op: OpId,
        storage: Arc<Storage>,
        len: u32,
        spans: Vec<FileSpan>,
    },
    /// The SHA-1 of the spans, for `create`; `tag` is the caller's (the piece index).
    Hash {
        tag: u64,
        storage: Arc<Storage>,
        spans: Vec<FileSpan>,
    },
    /// Resolve a host name for `Action::Connect { target: Target::Host }`.
    Resolve {
        conn: ConnId,
        host: String,
        port: u16,
    },
    /// Every address of a host name, for `Action::Resolve` (UDP trackers).
    Addresses { op: OpId, host: String },
    /// Save resume data ([`crate::resume::save`]) saying `have` is verified.
    SaveResume {
        /// Names the save in its completion (the driver's torrent index).
        tag: u64,
        storage: Arc<Storage>,
        path: PathBuf,
        info_hash: [u8; 20],
        have: Bitfield,
    },
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Job::Write { op, piece, .. } => write!(f, "Write({op}, piece {piece})"),
            Job::Verify { op, .. } => write!(f, "Verify({op})"),
            Job::Read { op, len, .. } => write!(f, "Read({op}, {len} bytes)"),
            Job::Hash { tag, .. } => write!(f, "Hash({tag})"),
            Job::Resolve { conn, host, port } => write!(f, "Resolve({conn}, {host}:{port})"),
            Job::Addresses { op, host } => write!(f, "Addresses({op}, {host})"),
            Job::SaveResume { path, .. } => write!(f, "SaveResume({})", path.display()),
        }
    }
}

/// A finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The answer to a `Write`, `Verify` or `Read`: feed it to the core as `Input::Disk`.
    Disk { op: OpId, result: DiskResult },
    Hashed {
        tag: u64,
        result: Result<[u8; 20], DiskError>,
    },
    /// The address to connect `conn` to, or why there is none.
    Resolved {
        conn: ConnId,
        result: Result<SocketAddr, String>,
    },
    /// The addresses of a host asked for by `Job::Addresses`: feed as `Input::Resolved`.
    Addresses {
        op: OpId,
        result: Result<Vec<IpAddr>, String>,
    },
    /// Resume data saved (the job's `tag`), or why not.
    Saved {
        tag: u64,
        result: Result<(), String>,
    },
}

impl Job {
    /// Runs the job; for a write, also returns the storage written to (to flush it).
    fn run(self) -> (Completion, Option<Arc<Storage>>) {
        let completion = match self {
            Job::Write {
                op,
                storage,
                piece,
                offset,
                data,
                spans,
                expected,
            } => {
                let result = storage.write(piece, offset, &data, &spans, expected);
                // The blocks are freed before the flush.
                drop(data);
                return (Completion::Disk { op, result }, Some(storage));
            }
            Job::Verify {
                op,
                storage,
                spans,
                expected,
            } => Completion::Disk {
                op,
                result: storage.verify(&spans, expected),
            },
            Job::Read {
                op,
                storage,
                len,
                spans,
            } => Completion::Disk {
                op,
                result: storage.read(&spans, len),
            },
            Job::Hash {
                tag,
                storage,
                spans,
            } => Completion::Hashed {
                tag,
                result: storage.hash(&spans),
            },
            Job::Resolve { conn, host, port } => Completion::Resolved {
                conn,
                result: resolve(&host, port),
            },
            Job::Addresses { op, host } => Completion::Addresses {
                op,
                result: addresses(&host),
            },
            Job::SaveResume {
                tag,
                storage,
                path,
                info_hash,
                have,
            } => Completion::Saved {
                tag,
                result: resume::save(&storage, &path, info_hash, have),
            },
        };
        (completion, None)
    }

    /// What to answer if the job panics (a bug, but the core must hear back): small and
    /// `Copy`, taken before each job runs, so that the error message is only built when it
    /// is needed.
    fn fallback(&self) -> Fallback {
        match self {
            Job::Write { op, .. } | Job::Verify { op, .. } | Job::Read { op, .. } => {
                Fallback::Disk(*op)
            }
            Job::Hash { tag, .. } => Fallback::Hashed(*tag),
            Job::Resolve { conn, .. } => Fallback::Resolved(*conn),
            Job::Addresses { op, .. } => Fallback::Addresses(*op),
            Job::SaveResume { tag, .. } => Fallback::Saved(*tag),
        }
    }
}

/// The answer to a job that panicked (the panic hook has printed the panic).
#[derive(Debug, Clone, Copy)]
enum Fallback {
    Disk(OpId),
    Hashed(u64),
    Resolved(ConnId),
    Addresses(OpId),
    Saved(u64),
}

impl Fallback {
    fn completion(self) -> Completion {
        let message = match self {
            Fallback::Disk(op) => format!("internal error while running disk job {op}"),
            Fallback::Hashed(tag) => format!("internal error while hashing (job {tag})"),
            Fallback::Resolved(conn) => format!("internal error while resolving for {conn}"),
            Fallback::Addresses(op) => format!("internal error while resolving ({op})"),
            Fallback::Saved(_) => "internal error while saving resume data".to_string(),
        };
        let error = DiskError {
            kind: DiskErrorKind::Other,
            message: message.clone(),
        };
        match self {
            Fallback::Disk(op) => Completion::Disk {
                op,
                result: DiskResult::Error(error),
            },
            Fallback::Hashed(tag) => Completion::Hashed {
                tag,
                result: Err(error),
            },
            Fallback::Resolved(conn) => Completion::Resolved {
                conn,
                result: Err(message),
            },
            Fallback::Addresses(op) => Completion::Addresses {
                op,
                result: Err(message),
            },
            Fallback::Saved(tag) => Completion::Saved {
                tag,
                result: Err(message),
            },
        }
    }
}

/// Resolves `host` with the system resolver, preferring an IPv4 address.
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{host} has no address"))
}

/// Every address of `host` from the system resolver, IPv4 ones first.
pub fn addresses(host: &str) -> Result<Vec<IpAddr>, String> {
    let mut ips: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .map(|a| a.ip())
        .collect();
    ips.sort_by_key(IpAddr::is_ipv6);
    ips.dedup();
    Ok(ips)
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Jobs submitted whose completion is not queued yet (waiting or running).
    busy: usize,
    closing: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    job_ready: Condvar,
    done: Mutex<Vec<Completion>>,
    done_ready: Condvar,
    wake: Wake,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn done(&self) -> MutexGuard<'_, Vec<Completion>> {
        self.done.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct DiskPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl fmt::Debug for DiskPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskPool")
            .field("workers", &self.workers.len())
            .finish()
    }
}

/// The default number of workers: two per CPU, from 4 to 16. Workers spend much of their
/// time blocked in the kernel (on a file's inode lock while another writes to it, on page
/// allocation, on a slow disk or resolver), and while they wait the CPUs should hash. On
/// the 2-core development machine, 1 GiB from a local seeder, 5 interleaved runs each:
/// 2 workers took a median 2.00 s (peak RSS 51 MiB), 4 took 1.87 s (48 MiB), 6 took 1.78 s
/// (30 MiB): pieces waiting for a worker are memory too.
pub fn default_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    (2 * cpus).clamp(4, 16)
}

impl DiskPool {
    /// A pool of `threads` workers (at least 1) calling `wake` after each completion.
    pub fn new(threads: usize, wake: Wake) -> std::io::Result<DiskPool> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                busy: 0,
                closing: false,
            }),
            job_ready: Condvar::new(),
            done: Mutex::new(Vec::new()),
            done_ready: Condvar::new(),
            wake,
        });
        let mut pool = DiskPool {
            shared,
            workers: Vec::new(),
        };
        for i in 0..threads.max(1) {
            let shared = pool.shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("tessera-disk-{i}"))
                .spawn(move || worker(&shared))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// A pool with [`default_threads`] workers.
    pub fn with_default_threads(wake: Wake) -> std::io::Result<DiskPool> {
        DiskPool::new(default_threads(), wake)
    }

    /// A pool for blocking callers, who use [`DiskPool::wait`] and need no wake-up.
    pub fn blocking() -> std::io::Result<DiskPool> {
        DiskPool::with_default_threads(Arc::new(|| {}))
    }

    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Queues a job. Name resolutions go first: they are few, and a tracker connection
    /// should not wait behind a long check of existing data.
    pub fn submit(&self, job: Job) {
        let mut q = self.shared.queue();
        q.busy += 1;
        if matches!(job, Job::Resolve { .. } | Job::Addresses { .. }) {
            q.jobs.push_front(job);
        } else {
            q.jobs.push_back(job);
        }
        drop(q);
        self.shared.job_ready.notify_one();
    }

    /// Moves every completion so far into `out`, without blocking.
    pub fn drain(&self, out: &mut Vec<Completion>) {
        out.append(&mut self.shared.done());
    }

    /// Like [`DiskPool::drain`], but first waits up to `timeout` (forever with `None`) for
    /// at least one completion. Returns false on a time-out.
    pub fn wait(&self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut done = self.shared.done();
        while done.is_empty() {
            match deadline {
                None => {
                    done = self
                        .shared
                        .done_ready
                        .wait(done)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    done = self
                        .shared
                        .done_ready
                        .wait_timeout(done, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        out.append(&mut done);
        true
    }

    /// Drops every job that has not started (for an immediate exit). Returns how many.
    pub fn abandon(&self) -> usize {
        let mut q = self.shared.queue();
        let n = q.jobs.len();
        q.jobs.clear();
        q.busy -= n;
        n
    }

    /// Waits at most `timeout` until every job submitted so far has completed, moving the
    /// completions into `out`. Returns false on a time-out.
    pub fn wait_idle(&self, out: &mut Vec<Completion>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let idle = self.shared.queue().busy == 0;
            // Completions are queued before `busy` drops: all are there once idle.
            self.drain(out);
            if idle {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let done = self.shared.done();
            if done.is_empty() {
                // Bounded: `busy` may drop just after the check above without a new
                // completion to wake us.
                let _ = self
                    .shared
                    .done_ready
                    .wait_timeout(done, left.min(Duration::from_millis(20)));
            }
        }
    }
}

impl Drop for DiskPool {
    /// Finishes the queued jobs (accepted writes reach the disk) and joins the workers.
    /// Call [`DiskPool::abandon`] first to skip what has not started.
    fn drop(&mut self) {
        self.shared.queue().closing = true;
        self.shared.job_ready.notify_all();
        for w in self.workers.drain(..) {
            // A worker never panics (jobs run under catch_unwind); nothing to report.
            let _ = w.join();
        }
    }
}

fn worker(shared: &Shared) {
    loop {
        let job = {
            let mut q = shared.queue();
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.closing {
                    return;
                }
                q = shared
                    .job_ready
                    .wait(q)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let fallback = job.fallback();
        let (completion, written) = catch_unwind(AssertUnwindSafe(|| job.run()))
            .unwrap_or_else(|_| (fallback.completion(), None));
        shared.done().push(completion);
        shared.queue().busy -= 1;
        shared.done_ready.notify_all();
        (shared.wake)();
        // Not once the pool is closing: a second Ctrl-C quits at once, without waiting for
        // a flush (the run saves no resume data then; a restart hashes what is on disk).
        if let Some(storage) = written.filter(|_| !shared.queue().closing) {
            // Its errors are kept by the storage and fail its next sync; a panic (a bug)
            // must not take the worker down.
            let _ = catch_unwind(AssertUnwindSafe(|| storage.writeback()));
        }
    }
}

/// Resolves `HOST:PORT` (names through the system resolver). When a name has several
/// addresses the first IPv4 one is used, else the first.
pub fn parse_peer(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("expected HOST:PORT, got {s:?}"));
    };
    let port = match port.parse::<u16>() {
        Ok(port) if !host.is_empty() => port,
        _ => return Err(format!("expected HOST:PORT with a port number, got {s:?}")),
    };
    resolve(host.trim_start_matches('[').trim_end_matches(']'), port)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::testutil::torrent;

    fn counting_pool(threads: usize) -> (DiskPool, Arc<AtomicUsize>) {
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        let pool = DiskPool::new(
            threads,
            Arc::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
        (pool, wakes)
    }

    /// The wake-up runs just after a completion is queued: wait (bounded) for the count.
    fn wait_for(wakes: &AtomicUsize, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while wakes.load(Ordering::SeqCst) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(wakes.load(Ordering::SeqCst), n);
    }

    fn collect(pool: &DiskPool, n: usize) -> Vec<Completion> {
        let mut out = Vec::new();
        while out.len() < n {
            assert!(
                pool.wait(&mut out, Some(Duration::from_secs(20))),
                "timed out with {} of {n} completions",
                out.len()
            );
        }
        assert_eq!(out.len(), n);
        out
    }

    #[test]
    fn disk_jobs_complete_and_wake_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent("p", &[("a", 50_000, false), ("b", 70_000, false)], 16384);
        let storage = Arc::new(Storage::new(dir.path(), t.meta.clone()).unwrap());
        storage.prepare().unwrap();
        let (pool, wakes) = counting_pool(3);
        assert_eq!(pool.threads(), 3);
        let l = t.meta.layout();
        let n = t.meta.num_pieces();
        for p in 0..n {
            pool.submit(Job::Write {
                op: OpId(u64::from(p)),
                storage: storage.clone(),
                piece: p,
                offset: 0,
                data: vec![Bytes::copy_from_slice(t.piece(p))],
                spans: l.spans(p, 0, l.piece_len(p)),
                expected: t.meta.piece_hash(p),
            });
        }
        let mut ops: Vec<u64> = collect(&pool, n as usize)
            .into_iter()
            .map(|c| match c {
                Completion::Disk {
                    op,
                    result: DiskResult::Ok,
                } => op.0,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        ops.sort_unstable();
        assert_eq!(ops, (0..u64::from(n)).collect::<Vec<_>>());
        wait_for(&wakes, n as usize);

        // Verify: piece 0 good, a wrong hash mismatches; a read returns the bytes.
        pool.submit(Job::Verify {
            op: OpId(100),
            storage: storage.clone(),
            spans: l.spans(0, 0, l.piece_len(0)),
            expected: t.meta.piece_hash(0).unwrap(),
        });
        pool.submit(Job::Verify {
            op: OpId(101),
            storage: storage.clone(),
            spans: l.spans(1, 0, l.piece_len(1)),
            expected: [1; 20],
        });
        pool.submit(Job::Read {
            op: OpId(102),
            storage: storage.clone(),
            len: 100,
            spans: l.spans(3, 0, 100),
        });
        pool.submit(Job::Hash {
            tag: 7,
            storage: storage.clone(),
            spans: l.spans(7, 0, l.piece_len(7)),
        });
        let mut results = collect(&pool, 4);
        results.sort_by_key(|c| match c {
            Completion::Disk { op, .. } => op.0,
            _ => u64::MAX,
        });
        let start = l.piece_offset(3) as usize;
        assert_eq!(
            results,
            vec![
                Completion::Disk {
                    op: OpId(100),
                    result: DiskResult::Ok
                },
                Completion::Disk {
                    op: OpId(101),
                    result: DiskResult::HashMismatch
                },
                Completion::Disk {
                    op: OpId(102),
                    result: DiskResult::Data(Bytes::copy_from_slice(&t.data[start..start + 100]))
                },
                Completion::Hashed {
                    tag: 7,
                    result: Ok(t.meta.piece_hash(7).unwrap())
                },
            ]
        );
        wait_for(&wakes, n as usize + 4);
        let mut none = Vec::new();
        pool.drain(&mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn the_worker_flushes_after_a_write_once_due() {
        let dir = tempfile::tempdir().unwrap();
        let t = torrent("f", &[("a", 50_000, false)], 16384);
        let storage = Arc::new(
            Storage::new(dir.path(), t.meta.clone())
                .unwrap()
                .with_writeback_every(1),
        );
        storage.prepare().unwrap();
        let l = t.meta.layout();
        // One worker: the flush after the write runs before the next job.
        let (pool, _) = counting_pool(1);
        pool.submit(Job::Write {
            op: OpId(1),
            storage: storage.clone(),
            piece: 0,
            offset: 0,
            data: vec![Bytes::copy_from_slice(t.piece(0))],
            spans: l.spans(0, 0, l.piece_len(0)),
            expected: t.meta.piece_hash(0),
        });
        pool.submit(Job::Verify {
            op: OpId(2),
            storage: storage.clone(),
            spans: l.spans(0, 0, l.piece_len(0)),
            expected: t.meta.piece_hash(0).unwrap(),
        });
        let results = collect(&pool, 2);
        assert!(results.iter().all(|c| matches!(
            c,
            Completion::Disk {
                result: DiskResult::Ok,
                ..
            }
        )));
        assert!(!storage.writeback_due(), "flushed after the write");
    }

    #[test]
    fn resolves_localhost() {
        let (pool, wakes) = counting_pool(2);
        pool.submit(Job::Resolve {
            conn: ConnId(9),
            host: "localhost".into(),
            port: 6969,
        });
        match collect(&pool, 1).pop() {
            Some(Completion::Resolved {
                conn: ConnId(9),
                result: Ok(addr),
            }) => {
                assert!(addr.ip().is_loopback(), "{addr}");
                assert_eq!(addr.port(), 6969);
            }
            other => panic!("unexpected {other:?}"),
        }
        wait_for(&wakes, 1);
        assert_eq!(resolve("127.0.0.1", 1), Ok("127.0.0.1:1".parse().unwrap()));
    }

    #[test]
    fn wait_times_out_and_abandon_discards_queued_jobs() {
        // The single worker blocks in the wake-up after its first job until released, so
        // the jobs submitted meanwhile are still queued.
        let (blocked_tx, blocked_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let pool = DiskPool::new(
            1,
            Arc::new(move || {
                let _ = blocked_tx.send(());
                let _ = release_rx.lock().unwrap().recv();
            }),
        )
        .unwrap();
        let resolve = |n| Job::Resolve {
            conn: ConnId(n),
            host: "127.0.0.1".into(),
            port: 1,
        };
        pool.submit(resolve(1));
        blocked_rx.recv_timeout(Duration::from_secs(20)).unwrap();
        pool.submit(resolve(2));
        pool.submit(resolve(3));
        assert_eq!(pool.abandon(), 2);
        drop(release_tx);
        let mut out = Vec::new();
        assert!(pool.wait(&mut out, Some(Duration::from_secs(20))));
        assert_eq!(out.len(), 1);
        assert!(matches!(
            out[0],
            Completion::Resolved {
                conn: ConnId(1),
                ..
            }
        ));
        assert!(!pool.wait(&mut out, Some(Duration::from_millis(20))));
        drop(pool);
        assert!(default_threads() >= 2);
    }
}
