//! The relay's sending limits (`max_messages_per_minute`, `max_recipients_per_day`): delivery
//! paces itself to them rather than being throttled half-way through a merge.
//!
//! Messages are spaced evenly, 5 % further apart than 60 / limit seconds: no minute, however
//! it is cut, holds more than the limit, even when the network delays one message and not the
//! next. Recipients are counted per minute over the last 24 hours, the
//! way providers count them; the counts are saved now and then so that a restart does not
//! start the day afresh.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::Clock;
use crate::config::SendingLimits;

const DAY_MINUTES: u64 = 1440;
/// How much slower than the limit messages go.
const MARGIN: f64 = 1.05;
pub const FILE_NAME: &str = "relay-usage.json";

pub struct Pacer {
    limits: SendingLimits,
    /// When the next message may start.
    next_slot: tokio::sync::Mutex<tokio::time::Instant>,
    /// (minute since the epoch, recipients handed to the relay in it), oldest first.
    day: Mutex<VecDeque<(u64, u64)>>,
    changed: std::sync::atomic::AtomicBool,
    path: PathBuf,
    clock: Clock,
}

impl Pacer {
    pub fn new(limits: SendingLimits, state_dir: &Path, clock: Clock) -> Pacer {
        let path = state_dir.join(FILE_NAME);
        let day: VecDeque<(u64, u64)> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Pacer {
            limits,
            next_slot: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            day: Mutex::new(day),
            changed: false.into(),
            path,
            clock,
        }
    }

    pub fn limits(&self) -> SendingLimits {
        self.limits
    }

    /// Waits for the next message's turn under `max_messages_per_minute`.
    pub async fn admit_message(&self) {
        let Some(per_minute) = self.limits.messages_per_minute else {
            return;
        };
        let spacing = Duration::from_secs_f64(60.0 * MARGIN / f64::from(per_minute));
        let at = {
            let mut next = self.next_slot.lock().await;
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + spacing;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// Counts `recipients` against the day's allowance, or says in how many seconds they fit.
    pub fn admit_recipients(&self, recipients: u64) -> Result<(), u64> {
        let now = (self.clock)();
        let minute = now / 60;
        let mut day = self.day.lock().unwrap();
        forget_old(&mut day, minute);
        if let Some(limit) = self.limits.recipients_per_day {
            let used: u64 = day.iter().map(|(_, n)| n).sum();
            // A message alone over the allowance goes when the window is empty.
            if used > 0 && used + recipients > u64::from(limit) {
                let mut freed = 0;
                for (m, n) in day.iter() {
                    freed += n;
                    if used - freed + recipients <= u64::from(limit) {
                        return Err(((m + DAY_MINUTES) * 60).saturating_sub(now).max(1));
                    }
                }
                let last = day.back().map_or(minute, |(m, _)| *m);
                return Err(((last + DAY_MINUTES) * 60).saturating_sub(now).max(1));
            }
        }
        match day.back_mut() {
            Some((m, n)) if *m == minute => *n += recipients,
            _ => day.push_back((minute, recipients)),
        }
        self.changed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Recipients handed to the relay over the last 24 hours.
    pub fn used_today(&self) -> u64 {
        let minute = (self.clock)() / 60;
        let mut day = self.day.lock().unwrap();
        forget_old(&mut day, minute);
        day.iter().map(|(_, n)| n).sum()
    }

    /// About how long until `messages` waiting messages with `recipients` recipients have all
    /// left, at the limits' pace (0 when nothing limits it).
    pub fn estimate(&self, messages: u64, recipients: u64) -> u64 {
        let mut secs = match self.limits.messages_per_minute {
            Some(m) if messages > 0 => {
                ((messages - 1) as f64 * 60.0 * MARGIN / f64::from(m)) as u64
            }
            _ => 0,
        };
        if let Some(limit) = self.limits.recipients_per_day {
            let limit = u64::from(limit);
            let used = self.used_today();
            if used + recipients > limit {
                // Beyond today's room, a full day per allowance.
                let over = used + recipients - limit;
                secs = secs.max(over.div_ceil(limit) * 86_400);
            }
        }
        secs
    }

    /// Writes the day's counts if they changed (blocking: run it off the async workers).
    pub fn save(&self) -> std::io::Result<()> {
        if !self
            .changed
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        let bytes =
            serde_json::to_vec(&*self.day.lock().unwrap()).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.path)
    }
}

fn forget_old(day: &mut VecDeque<(u64, u64)>, minute: u64) {
    while day.front().is_some_and(|(m, _)| m + DAY_MINUTES <= minute) {
        day.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn pacer(limits: SendingLimits) -> (Pacer, Arc<AtomicU64>, tempfile::TempDir) {
        let now = Arc::new(AtomicU64::new(1_000_000 * 60));
        let n = now.clone();
        let dir = tempfile::tempdir().unwrap();
        let p = Pacer::new(
            limits,
            dir.path(),
            Arc::new(move || n.load(Ordering::Relaxed)),
        );
        (p, now, dir)
    }

    #[test]
    fn the_day_allowance_waits_for_the_oldest_minutes() {
        let limits = SendingLimits {
            recipients_per_day: Some(10),
            ..Default::default()
        };
        let (p, now, dir) = pacer(limits);
        p.admit_recipients(4).unwrap();
        now.fetch_add(3600, Ordering::Relaxed);
        p.admit_recipients(5).unwrap();
        assert_eq!(p.used_today(), 9);
        // 2 more need the first 4 gone: 23 hours from now.
        assert_eq!(p.admit_recipients(2), Err(23 * 3600));
        p.admit_recipients(1).unwrap();
        assert_eq!(p.estimate(3, 30), 3 * 86_400);
        now.fetch_add(23 * 3600, Ordering::Relaxed);
        assert_eq!(p.used_today(), 6);
        p.admit_recipients(2).unwrap();
        // Saved and read back by the next daemon.
        p.save().unwrap();
        let again = Pacer::new(limits, dir.path(), {
            let n = now.clone();
            Arc::new(move || n.load(Ordering::Relaxed))
        });
        assert_eq!(again.used_today(), 8);
    }

    #[tokio::test]
    async fn messages_are_spaced_evenly() {
        let limits = SendingLimits {
            messages_per_minute: Some(600),
            ..Default::default()
        };
        let (p, _, _dir) = pacer(limits);
        let start = tokio::time::Instant::now();
        for _ in 0..4 {
            p.admit_message().await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(900),
            "{took:?}"
        );
        assert_eq!(p.estimate(601, 601), 63);
    }
}
