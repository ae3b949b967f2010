//! The pure rules behind `[limits]`: sliding 24-hour windows of past events (codes e-mailed to
//! an address, accounts created by a user), and the key an address is counted under. The
//! events themselves are kept in the store so that deleting an account or restarting the
//! daemon forgets none of them.

use crate::model::{Account, State};

pub const DAY_SECS: u64 = 86_400;

/// Why an event is refused, with the seconds to wait before it would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The previous one is less than the interval old.
    TooSoon(u64),
    /// The day's allowance is used up.
    DailyCap(u64),
}

/// The events of the last day, oldest first. An event dated after `now` (the clock went back)
/// is kept: forgetting it would hand out a fresh allowance.
pub fn recent(events: &[u64], now: u64) -> Vec<u64> {
    let mut kept: Vec<u64> = events
        .iter()
        .copied()
        .filter(|&t| t.saturating_add(DAY_SECS) > now)
        .collect();
    kept.sort_unstable();
    kept
}

/// Whether one more event at `now` fits: at least `interval` after the previous one (0: no
/// interval) and fewer than `per_day` in the last day.
pub fn check(events: &[u64], now: u64, interval: u64, per_day: u32) -> Result<(), Refusal> {
    let recent = recent(events, now);
    if let Some(&last) = recent.last() {
        let next = last.saturating_add(interval);
        if interval > 0 && now < next {
            return Err(Refusal::TooSoon(next - now));
        }
    }
    if recent.len() >= per_day as usize {
        let oldest = recent[recent.len() - per_day as usize];
        return Err(Refusal::DailyCap(
            oldest.saturating_add(DAY_SECS).saturating_sub(now).max(1),
        ));
    }
    Ok(())
}

/// `events` with `now` added and those older than a day dropped, so a record stays small.
pub fn with(events: &[u64], now: u64) -> Vec<u64> {
    let mut kept = recent(events, now);
    kept.push(now);
    kept
}

/// `events` without one occurrence of `at` (an event that turned out not to happen).
pub fn without(events: &[u64], at: u64) -> Vec<u64> {
    let mut kept = events.to_vec();
    if let Some(i) = kept.iter().rposition(|&t| t == at) {
        kept.remove(i);
    }
    kept
}

/// The form an address is counted under: case folded and without a `+tag`, since
/// `Victim+1@x` and `victim@x` land in the same mailbox.
pub fn address_key(address: &str) -> String {
    let address = address.trim().to_lowercase();
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let local = local.split('+').next().unwrap_or(local);
            format!("{local}@{domain}")
        }
        None => address,
    }
}

/// Whether `account` holds its address on this PC: once the code came back, the address is its.
pub fn holds(account: &Account, address: &str) -> bool {
    account.state != State::AwaitingCode && account.address.eq_ignore_ascii_case(address)
}

/// A wait in words, for the person at the keyboard.
pub fn wait_words(secs: u64) -> String {
    match secs {
        0..=90 => format!("{secs} s"),
        91..=5400 => format!("{} min", secs.div_ceil(60)),
        _ => format!("{} h", secs.div_ceil(3600)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000;

    #[test]
    fn an_interval_separates_two_events() {
        assert_eq!(check(&[], T, 60, 5), Ok(()));
        assert_eq!(check(&[T], T, 60, 5), Err(Refusal::TooSoon(60)));
        assert_eq!(check(&[T], T + 59, 60, 5), Err(Refusal::TooSoon(1)));
        assert_eq!(check(&[T], T + 60, 60, 5), Ok(()));
        assert_eq!(check(&[T, T + 100], T + 120, 0, 5), Ok(()), "no interval");
    }

    #[test]
    fn the_daily_cap_slides_with_the_oldest_event() {
        let five: Vec<u64> = (0..5).map(|i| T + i * 3600).collect();
        let now = T + 5 * 3600;
        assert_eq!(
            check(&five, now, 60, 5),
            Err(Refusal::DailyCap(DAY_SECS - 5 * 3600))
        );
        assert_eq!(check(&five[1..], now, 60, 5), Ok(()));
        // A day after the oldest, one more fits, not two.
        assert_eq!(check(&five, T + DAY_SECS, 60, 5), Ok(()));
        let six = with(&five, T + DAY_SECS);
        assert_eq!(six.len(), 5, "the oldest was dropped");
        assert!(matches!(
            check(&six, T + DAY_SECS + 60, 60, 5),
            Err(Refusal::DailyCap(_))
        ));
    }

    #[test]
    fn events_from_a_clock_that_went_back_still_count() {
        assert_eq!(check(&[T + 500], T, 60, 5), Err(Refusal::TooSoon(560)));
        assert!(matches!(
            check(&[T + 500; 5], T, 0, 5),
            Err(Refusal::DailyCap(_))
        ));
    }

    #[test]
    fn an_event_can_be_taken_back_once() {
        assert_eq!(without(&[T, T + 1, T + 1], T + 1), vec![T, T + 1]);
        assert_eq!(without(&[T], T + 9), vec![T]);
    }

    #[test]
    fn addresses_are_counted_without_case_or_tag() {
        assert_eq!(address_key(" Victim+1@Ecole.FR "), "victim@ecole.fr");
        assert_eq!(address_key("victim@ecole.fr"), "victim@ecole.fr");
        assert_eq!(address_key("a+b+c@x.fr"), "a@x.fr");
    }

    #[test]
    fn waits_read_naturally() {
        assert_eq!(wait_words(42), "42 s");
        assert_eq!(wait_words(600), "10 min");
        assert_eq!(wait_words(20 * 3600), "20 h");
    }
}
