//! crashfs: a FUSE layer that keeps every write and name change not yet covered by an fsync
//! apart from the disk, and drops them all at a "power cut" — what LazyFS does for Jepsen —
//! so that crash tests check an fsync discipline rather than a page cache that survives.
//!
//! `crashfs [--journal] BACKING MOUNTPOINT` mounts BACKING at MOUNTPOINT and prints `ready`.
//! SIGUSR1 is the cut: it prints `cut`, and from then on every request fails with EIO. When
//! the mount goes (`fusermount3 -u`, or SIGTERM), BACKING is rolled back to what was synced
//! if the cut happened, or kept whole if it did not (a clean unmount syncs), and the last line
//! printed says what the cut threw away. `Mount` drives the binary from a test.

pub mod core;
pub mod fs;

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `crashfs` binary.
pub struct Mount {
    child: Option<Child>,
    lines: Lines<BufReader<ChildStdout>>,
    pub mountpoint: PathBuf,
}

impl Mount {
    /// Mounts `backing` at `mountpoint` (both existing directories) with the binary at `bin`;
    /// `torn`: un-synced writes torn at the cut, drawn from this seed (`crashfs --torn`).
    pub fn start(
        bin: &Path,
        backing: &Path,
        mountpoint: &Path,
        journal: bool,
        torn: Option<u64>,
    ) -> Mount {
        let mut command = Command::new(bin);
        if journal {
            command.arg("--journal");
        }
        if let Some(seed) = torn {
            command.arg(format!("--torn={seed}"));
        }
        let mut child = command
            .arg(backing)
            .arg(mountpoint)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start crashfs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(first, "ready", "crashfs did not mount: {:?}", child.wait());
        Mount {
            child: Some(child),
            lines,
            mountpoint: mountpoint.to_owned(),
        }
    }

    /// The power cut: returns once crashfs answers nothing but EIO.
    pub fn cut(&mut self) {
        let pid = self.child.as_ref().expect("running").id();
        // Our own child, still ours to wait for: the pid cannot have been reused.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .expect("signal crashfs");
        let line = self.lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(line, "cut", "crashfs did not take the cut");
    }

    /// Unmounts and waits for crashfs to roll the backing tree back (after a cut); returns
    /// its last line, which says what was thrown away.
    pub fn unmount(mut self) -> String {
        let start = Instant::now();
        loop {
            let out = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mountpoint)
                .output()
                .expect("fusermount3 (package fuse3) must be installed");
            if out.status.success() {
                break;
            }
            // Busy for a moment after a kill, while the kernel closes the dead process' files.
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "cannot unmount {}: {}",
                self.mountpoint.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut child = self.child.take().unwrap();
        let last = self.lines.by_ref().map_while(Result::ok).last();
        let status = child.wait().unwrap();
        assert!(status.success(), "crashfs exited with {status}");
        last.unwrap_or_default()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mountpoint)
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
