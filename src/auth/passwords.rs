//! Argon2id password hashing off the async runtime.
//!
//! A hash costs tens of milliseconds of one core and 19 MiB of memory (OWASP's parameters), so it
//! runs on a small pool of dedicated threads fed through a bounded queue: a full queue answers
//! `Busy` at once (the handler turns that into 503 + `Retry-After`) instead of letting sign-ups
//! pile up, and the runtime's threads never block. By default the pool has one thread fewer
//! than the machine has cores, and its threads run at a lower scheduling priority, so routes
//! that do not hash keep their latency while sign-ups saturate the pool (BENCHMARKS.md).

use serde::{Deserialize, Serialize};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

/// Argon2id password hashing (OWASP: m = 19 MiB, t = 2, p = 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashing threads (0: one less than the CPUs, at least one), so requests that do not hash
    /// keep a core.
    pub workers: usize,
    /// Hashes that may wait for a thread; beyond this, 503 + `Retry-After`.
    pub queue: usize,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1, workers: 0, queue: 64 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the password hashing queue is full")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

enum Work {
    Hash(SecretString),
    Verify { password: SecretString, phc: String },
}

enum Done {
    Hashed(String),
    Verified(bool),
}

struct Task {
    work: Work,
    queued_at: Instant,
    reply: oneshot::Sender<Result<Done, HashError>>,
}

/// Cheap to clone; every clone feeds the same threads.
#[derive(Clone)]
pub struct PasswordHasher {
    queue: SyncSender<Task>,
}

impl PasswordHasher {
    /// Starts the hashing threads. Fails when the parameters are not valid Argon2 parameters.
    pub fn start(settings: &PasswordSettings) -> Result<Self, HashError> {
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None)
            .map_err(|e| HashError::Failed(e.to_string()))?;
        let workers = match settings.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
            n => n,
        };
        let (queue, receiver) = mpsc::sync_channel(settings.queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..workers {
            let (receiver, params) = (Arc::clone(&receiver), params.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || run_worker(&receiver, params))
                .map_err(|e| HashError::Failed(e.to_string()))?;
        }
        Ok(Self { queue })
    }

    /// An Argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        match self.submit(Work::Hash(SecretString::from(password.to_owned()))).await? {
            Done::Hashed(phc) => Ok(phc),
            Done::Verified(_) => Err(HashError::Failed("unexpected answer".into())),
        }
    }

    /// Whether `password` is the one `phc` was made from, with the parameters stored in `phc`.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, HashError> {
        let work = Work::Verify { password: SecretString::from(password.to_owned()), phc: phc.to_owned() };
        match self.submit(work).await? {
            Done::Verified(ok) => Ok(ok),
            Done::Hashed(_) => Err(HashError::Failed("unexpected answer".into())),
        }
    }

    async fn submit(&self, work: Work) -> Result<Done, HashError> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Task { work, queued_at: Instant::now(), reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("password_hash_rejected_total").increment(1);
                return Err(HashError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => return Err(HashError::Failed("no hashing thread is running".into())),
        }
        answer.await.map_err(|_| HashError::Failed("the hashing thread stopped".into()))?
    }
}

fn run_worker(receiver: &Mutex<Receiver<Task>>, params: Params) {
    lower_priority();
    // One Argon2 memory (19 MiB by default) per thread for its whole life: allocating and
    // returning it per hash means thousands of page faults each time and address-space changes
    // that every other thread of the process can stall on.
    let mut memory = vec![Block::default(); params.block_count()];
    loop {
        // The lock is held only while waiting for the next task, never while hashing.
        let task = match receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv() {
            Ok(task) => task,
            Err(_) => return,
        };
        metrics::histogram!("password_hash_wait_seconds").record(task.queued_at.elapsed().as_secs_f64());
        let started = Instant::now();
        let result = match task.work {
            Work::Hash(password) => hash(&params, password.expose_secret().as_bytes(), &mut memory).map(Done::Hashed),
            Work::Verify { password, phc } => {
                verify(password.expose_secret().as_bytes(), &phc, &mut memory).map(Done::Verified)
            }
        };
        metrics::histogram!("password_hash_seconds").record(started.elapsed().as_secs_f64());
        let _ = task.reply.send(result);
    }
}

fn failed(e: impl std::fmt::Display) -> HashError {
    HashError::Failed(e.to_string())
}

/// Argon2id of `password` with a fresh 16-byte salt, as a PHC string.
fn hash(params: &Params, password: &[u8], memory: &mut Vec<Block>) -> Result<String, HashError> {
    fit(memory, params);
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, &salt, &mut out, &mut **memory)
        .map_err(failed)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(failed)?,
        salt: Some(Salt::new(&salt).map_err(failed)?),
        hash: Some(Output::new(&out).map_err(failed)?),
    };
    Ok(phc.to_string())
}

/// Sizes the thread's Argon2 memory for `params` (a no-op but after a hash with other costs).
fn fit(memory: &mut Vec<Block>, params: &Params) {
    if memory.len() != params.block_count() {
        *memory = vec![Block::default(); params.block_count()];
    }
}

/// Recomputes `phc` with the parameters stored in it and compares in constant time.
fn verify(password: &[u8], phc: &str, memory: &mut Vec<Block>) -> Result<bool, HashError> {
    let parsed = PasswordHash::new(phc).map_err(|e| failed(format!("stored hash is not a PHC string: {e}")))?;
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(failed)?;
    let version = Version::try_from(parsed.version.unwrap_or(0x13)).map_err(failed)?;
    let params = Params::try_from(&parsed).map_err(failed)?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(failed("stored hash has no salt or output"));
    };
    // Hashes made with other parameters (before a cost change) still verify.
    fit(memory, &params);
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt.as_ref(), &mut out, &mut **memory)
        .map_err(failed)?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(failed)? == *expected)
}

/// `SCHED_IDLE` for this thread only (Linux schedules threads individually), nice 19 where that
/// is refused. Both make the scheduler favour request handling when the two compete for a core;
/// `SCHED_IDLE` also makes a core that runs only hashing count as idle when a woken thread is
/// placed (`sched_idle_cpu`), so a request's thread goes to the hashing core and preempts the
/// hash at once instead of queueing behind another busy thread on the other core. With nice 19
/// such waits reached tens of milliseconds under sign-up load (BENCHMARKS.md, 2026-12-03).
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: plain system calls on the calling thread (0 = the caller); failure only leaves a
    // higher priority.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordSettings {
        PasswordSettings { memory_kib: 8 * 1024, iterations: 1, parallelism: 1, workers: 1, queue: 4 }
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let hasher = PasswordHasher::start(&cheap()).unwrap();
        let phc = hasher.hash("A9#bL8@z").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{phc}");
        assert!(hasher.verify("A9#bL8@z", &phc).await.unwrap());
        assert!(!hasher.verify("A9#bL8@Z", &phc).await.unwrap());
        assert_ne!(phc, hasher.hash("A9#bL8@z").await.unwrap(), "salts must differ");
        assert!(matches!(hasher.verify("x", "not a hash").await, Err(HashError::Failed(_))));
    }

    #[tokio::test]
    async fn hashes_from_the_standard_api_and_other_costs_verify() {
        use argon2::password_hash::PasswordHasher as _;
        let other = Params::new(9 * 1024, 2, 1, None).unwrap();
        let standard =
            Argon2::new(Algorithm::Argon2id, Version::V0x13, other).hash_password(b"Zq7!tRw2").unwrap().to_string();
        let hasher = PasswordHasher::start(&cheap()).unwrap();
        assert!(hasher.verify("Zq7!tRw2", &standard).await.unwrap());
        assert!(!hasher.verify("Zq7!tRw3", &standard).await.unwrap());
        // And ours verify with the standard API.
        use argon2::password_hash::PasswordVerifier as _;
        let ours = hasher.hash("Zq7!tRw2").await.unwrap();
        assert!(Argon2::default().verify_password(b"Zq7!tRw2", &PasswordHash::new(&ours).unwrap()).is_ok());
        // The thread's memory is resized back for its own parameters: they still verify.
        assert!(hasher.verify("Zq7!tRw2", &ours).await.unwrap());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_under_sched_idle() {
        let hasher = PasswordHasher::start(&cheap()).unwrap();
        // A finished hash means the thread has set its own policy.
        hasher.hash("A9#bL8@z").await.unwrap();
        let mut seen = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let task = task.unwrap();
            if std::fs::read_to_string(task.path().join("comm")).unwrap().trim_end().starts_with("argon2-") {
                let tid: libc::pid_t = task.file_name().to_str().unwrap().parse().unwrap();
                // SAFETY: a read-only query of another thread's policy.
                assert_eq!(unsafe { libc::sched_getscheduler(tid) }, libc::SCHED_IDLE, "thread {tid}");
                seen += 1;
            }
        }
        assert!(seen >= 1, "no hashing thread found");
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let settings = PasswordSettings { memory_kib: 64 * 1024, iterations: 4, queue: 1, ..cheap() };
        let hasher = PasswordHasher::start(&settings).unwrap();
        // Eight submissions at once: one hashing, one queued, the rest refused.
        let mut attempts = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let hasher = hasher.clone();
            attempts.spawn(async move { hasher.hash("A9#bL8@z").await });
        }
        let results = attempts.join_all().await;
        assert!(results.iter().any(|r| matches!(r, Err(HashError::Busy))));
        assert!(results.iter().any(|r| r.is_ok()));
    }
}
