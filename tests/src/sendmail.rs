//! The sendmail door (`postecole-sendmail`) as scripts run it: arguments, a message on
//! standard input, an exit status.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{Bus, bin, shared_bin};

/// Result of one sendmail run.
#[derive(Debug)]
pub struct Door {
    /// The exit status (sysexits.h on failure).
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the door against the test bus with `input` on standard input, as `user` (through
/// runuser) or as the test's own user.
pub fn sendmail(bus: &Bus, user: Option<&str>, args: &[&str], input: &[u8]) -> Door {
    let mut cmd = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"])
                .arg(shared_bin("postecole-sendmail"));
            c
        }
        None => Command::new(bin("postecole-sendmail")),
    };
    let mut child = cmd
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run postecole-sendmail");
    let mut pipe = child.stdin.take().unwrap();
    // Without -i the door stops reading at a lone dot: the rest may meet a closed pipe.
    let _ = pipe.write_all(input);
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    Door {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
