//! The rules of what one submitter may hold in the spool, and of the disk's reserve. Pure but
//! for reading the file system's free space, so that they are tested as rules.

use std::path::Path;

/// Messages whose bytes are in the spool, and those bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub messages: u64,
    pub bytes: u64,
}

impl Usage {
    pub fn add(&mut self, bytes: u64) {
        self.plus(Usage { messages: 1, bytes });
    }

    pub fn plus(&mut self, other: Usage) {
        self.messages = self.messages.saturating_add(other.messages);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }

    pub fn minus(&mut self, other: Usage) {
        self.messages = self.messages.saturating_sub(other.messages);
        self.bytes = self.bytes.saturating_sub(other.bytes);
    }
}

/// The most one submitter may hold in the spool (`limits.max_queued_*`).
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub max_messages: u64,
    pub max_bytes: u64,
}

impl Quota {
    /// Whether `held` plus `adding` stays within the quota; if not, a sentence saying by how
    /// much and what to do.
    pub fn admit(&self, held: Usage, adding: Usage) -> Result<(), String> {
        let messages = held.messages.saturating_add(adding.messages);
        if messages > self.max_messages {
            return Err(format!(
                "you already have {} messages waiting to be sent; {} more would exceed your limit of {} (max_queued_messages): wait for them to leave or cancel some",
                held.messages, adding.messages, self.max_messages
            ));
        }
        let bytes = held.bytes.saturating_add(adding.bytes);
        if bytes > self.max_bytes {
            return Err(format!(
                "your messages waiting to be sent take {:.1} MB; {:.1} MB more would exceed your limit of {:.1} MB (max_queued_bytes): wait for them to leave or cancel some",
                mb(held.bytes),
                mb(adding.bytes),
                mb(self.max_bytes)
            ));
        }
        Ok(())
    }
}

/// Whether `adding` bytes may be written with `free` bytes free, keeping `reserve` free.
pub fn admit_disk(free: u64, reserve: u64, adding: u64) -> Result<(), String> {
    if free < reserve.saturating_add(adding) {
        return Err(format!(
            "the disk holding postecole's state is nearly full ({:.1} MB free, {:.1} MB kept for deliveries in progress): no new mail or account for now; ask an administrator to free space",
            mb(free),
            mb(reserve)
        ));
    }
    Ok(())
}

/// Bytes an unprivileged writer may still use in the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: Quota = Quota {
        max_messages: 3,
        max_bytes: 1000,
    };

    fn usage(messages: u64, bytes: u64) -> Usage {
        Usage { messages, bytes }
    }

    #[test]
    fn quota_counts_what_is_held_and_what_comes() {
        assert!(QUOTA.admit(usage(0, 0), usage(3, 1000)).is_ok());
        assert!(QUOTA.admit(usage(2, 10), usage(1, 10)).is_ok());
        let e = QUOTA.admit(usage(2, 10), usage(2, 10)).unwrap_err();
        assert!(
            e.contains("max_queued_messages") && e.contains("2 messages"),
            "{e}"
        );
        let e = QUOTA.admit(usage(1, 600), usage(1, 401)).unwrap_err();
        assert!(e.contains("max_queued_bytes"), "{e}");
        // One call over the limit on its own is refused though nothing is held.
        assert!(QUOTA.admit(usage(0, 0), usage(4, 4)).is_err());
    }

    #[test]
    fn usage_never_wraps() {
        let mut u = usage(1, 10);
        u.minus(usage(2, 20));
        assert_eq!(u, usage(0, 0));
        u.plus(usage(u64::MAX, u64::MAX));
        u.add(5);
        assert_eq!(u, usage(u64::MAX, u64::MAX));
    }

    #[test]
    fn disk_reserve_keeps_room_for_outcomes() {
        assert!(admit_disk(100, 50, 50).is_ok());
        let e = admit_disk(100, 50, 51).unwrap_err();
        assert!(e.contains("nearly full"), "{e}");
        assert!(
            admit_disk(10, 50, 0).is_err(),
            "below the reserve, nothing new"
        );
        assert!(admit_disk(0, 0, 0).is_ok());
    }

    #[test]
    fn free_bytes_reads_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
    }
}
