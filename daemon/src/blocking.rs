//! Where work that may block runs: off the async workers, in pools of bounded size, each run
//! with a time limit, and no caller holding more than a small share of a pool.
//!
//! A blocking call cannot be cancelled: when its time is up the caller gets an error at once,
//! but the thread and the permits it holds stay taken until the call returns. That is what
//! keeps the pool bounded: a caller whose runs hang fills its own share, never the others'.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{what} took longer than {} s and was abandoned", .limit.as_secs())]
    TimedOut { what: &'static str, limit: Duration },
    #[error("{what} failed: {message}")]
    Failed { what: &'static str, message: String },
}

pub struct Pool {
    what: &'static str,
    total: Arc<Semaphore>,
    per_caller: usize,
    limit: Duration,
    callers: Mutex<HashMap<u32, Arc<Semaphore>>>,
}

impl Pool {
    pub fn new(what: &'static str, size: usize, per_caller: usize, limit: Duration) -> Pool {
        Pool {
            what,
            total: Arc::new(Semaphore::new(size)),
            per_caller: per_caller.clamp(1, size),
            limit,
            callers: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on a blocking thread once `uid` has a free share of the pool and the pool a
    /// free thread. Waiting for a share counts against the time limit too: a caller stuck
    /// behind its own hung runs gets an answer rather than a hang.
    pub async fn run<T: Send + 'static>(
        &self,
        uid: u32,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let share = self.share(uid);
        let limit = self.limit;
        let timed_out = || Error::TimedOut {
            what: self.what,
            limit,
        };
        let run = async {
            let own: OwnedSemaphorePermit = share.acquire_owned().await.expect("never closed");
            let pool = self
                .total
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            let task = tokio::task::spawn_blocking(move || {
                let _held = (own, pool);
                f()
            });
            task.await.map_err(|e| Error::Failed {
                what: self.what,
                message: e.to_string(),
            })
        };
        tokio::time::timeout(limit, run)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }

    fn share(&self, uid: u32) -> Arc<Semaphore> {
        let mut callers = self.callers.lock().unwrap();
        // Forget callers with nothing running, so that the map stays as small as the set of
        // users busy right now.
        if callers.len() > 64 {
            let per_caller = self.per_caller;
            callers.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < per_caller);
        }
        callers
            .entry(uid)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_caller)))
            .clone()
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Argon2id: memory-hard on purpose, so at most one per core daemon-wide, one per caller.
pub static ARGON2: LazyLock<Pool> =
    LazyLock::new(|| Pool::new("hashing the secret", cores(), 1, Duration::from_secs(60)));

/// Reading or writing a file a caller handed over (attachments, key files, an export).
pub static CALLER_FILES: LazyLock<Pool> = LazyLock::new(|| {
    Pool::new(
        "reading or writing your file",
        16,
        2,
        Duration::from_secs(30),
    )
});

/// The user and group databases, which may be remote (LDAP, SSSD) and slow.
pub static USER_LOOKUPS: LazyLock<Pool> = LazyLock::new(|| {
    Pool::new(
        "looking up the user database",
        8,
        2,
        Duration::from_secs(10),
    )
});

/// Listing the queue's records: a scan of the whole history, however short pruning keeps it.
pub static LISTINGS: LazyLock<Pool> =
    LazyLock::new(|| Pool::new("listing the messages", cores(), 1, Duration::from_secs(30)));

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_hung_caller_fills_only_its_own_share_and_gets_an_answer() {
        let pool = Arc::new(Pool::new("test", 4, 2, Duration::from_millis(200)));
        let release = Arc::new(std::sync::Barrier::new(3));
        // Two runs of uid 1000 that hang until released.
        let mut hung = Vec::new();
        for _ in 0..2 {
            let (pool, release) = (pool.clone(), release.clone());
            hung.push(tokio::spawn(async move {
                pool.run(1000, move || {
                    release.wait();
                })
                .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Its third waits for its own share and is answered when its time is up.
        let third = pool.run(1000, || ()).await;
        assert!(matches!(third, Err(Error::TimedOut { .. })), "{third:?}");
        // Another user still runs at once.
        assert_eq!(pool.run(1001, || 7).await, Ok(7));
        for h in hung {
            assert!(matches!(h.await.unwrap(), Err(Error::TimedOut { .. })));
        }
        release.wait();
    }

    #[tokio::test]
    async fn never_more_at_once_than_the_pool_holds() {
        let pool = Arc::new(Pool::new("test", 2, 2, Duration::from_secs(10)));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut runs = Vec::new();
        for uid in 0..8 {
            let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
            runs.push(tokio::spawn(async move {
                pool.run(uid, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        for r in runs {
            r.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
