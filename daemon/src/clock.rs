//! Wall-clock seconds, injectable so that tests can move time forward.

use std::sync::Arc;

pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}
