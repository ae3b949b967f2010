//! The Unix users and group the multi-user tests run as.

use std::process::Command;

/// Unix users the multi-user tests run `mailctl` as; created on first use (needs root).
pub const ADMIN_GROUP: &str = "postecole-test-admin";
pub const USER_ALICE: &str = "pctest-alice";
pub const USER_BOB: &str = "pctest-bob";
pub const USER_ADMIN: &str = "pctest-admin";
/// A Unix group with alice alone as member, named as staff with `@`.
pub const GROUP_TEACHERS: &str = "pctest-teachers";
/// polkit actions of systemd/org.postecole.Mail1.policy.
pub const ACTION_ADMINISTER: &str = "org.postecole.mail1.administer";
pub const ACTION_SEND_ESTABLISHMENT: &str = "org.postecole.mail1.send-establishment";
/// The service user of the shipped unit and bus policy.
pub const SERVICE_USER: &str = "postecole";

/// Creates the test users and admin group once. Needs root (CI runs as root).
pub fn ensure_users() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "the multi-user tests create Unix users and must run as root"
        );
        let run = |args: &[&str]| {
            let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
            assert!(status.success(), "{args:?} failed");
        };
        if nix::unistd::Group::from_name(ADMIN_GROUP)
            .unwrap()
            .is_none()
        {
            run(&["groupadd", "--system", ADMIN_GROUP]);
        }
        for user in [USER_ALICE, USER_BOB, USER_ADMIN] {
            if nix::unistd::User::from_name(user).unwrap().is_none() {
                run(&[
                    "useradd",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    user,
                ]);
            }
        }
        run(&["usermod", "-a", "-G", ADMIN_GROUP, USER_ADMIN]);
        if nix::unistd::Group::from_name(GROUP_TEACHERS)
            .unwrap()
            .is_none()
        {
            run(&["groupadd", GROUP_TEACHERS]);
        }
        run(&["usermod", "-a", "-G", GROUP_TEACHERS, USER_ALICE]);
        if nix::unistd::User::from_name(SERVICE_USER)
            .unwrap()
            .is_none()
        {
            run(&[
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ]);
        }
    });
}
