//! Several Unix users on one PC: who sees and uses which account, decided from the bus's own
//! credentials of each call.

use std::process::Command;

use postecole_tests::{
    Bus, Ctl, Daemon, GROUP_TEACHERS, USER_ADMIN, USER_ALICE, USER_BOB, active_account, api,
    create, ensure_users, mailctl,
};

fn ids(bus: &Bus, user: Option<&str>) -> Vec<String> {
    let list: serde_json::Value =
        serde_json::from_str(&mailctl(bus, user, &["account", "list", "--json"], None).out())
            .unwrap();
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn staff_administrators_and_owners() {
    ensure_users();
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, "");
    let alice = Some(USER_ALICE);
    let bob = Some(USER_BOB);
    let admin = Some(USER_ADMIN);

    // A non-administrator cannot add an establishment address.
    let e = create(&bus, alice, "establishment", "S", "s@ecole.fr").err("NotAuthorized");
    assert!(e.contains("postecole-test-admin"), "names the group: {e}");

    // A member of the admin group can, and names alice as staff.
    let shared = active_account(
        &bus,
        &daemon,
        None,
        admin,
        "establishment",
        "secretariat@ecole.fr",
    );
    assert_eq!(
        ids(&bus, alice),
        Vec::<String>::new(),
        "not on the staff yet"
    );
    mailctl(&bus, alice, &["account", "show", &shared], None).err("NotFound");
    mailctl(
        &bus,
        alice,
        &["account", "staff", &shared, "--add", USER_ALICE],
        None,
    )
    .err("NotFound");
    mailctl(
        &bus,
        admin,
        &["account", "staff", &shared, "--add", USER_ALICE],
        None,
    )
    .out();
    assert_eq!(ids(&bus, alice), vec![shared.clone()]);
    assert_eq!(
        ids(&bus, bob),
        Vec::<String>::new(),
        "bob is not on the staff"
    );
    mailctl(&bus, bob, &["account", "show", &shared], None).err("NotFound");

    // Staff use it but do not administer it.
    mailctl(&bus, alice, &["account", "default", &shared], None).out();
    mailctl(
        &bus,
        alice,
        &["account", "staff", &shared, "--add", USER_BOB],
        None,
    )
    .err("NotAuthorized");
    mailctl(&bus, alice, &["account", "delete", &shared], None).err("NotAuthorized");
    mailctl(
        &bus,
        alice,
        &["account", "convert", &shared, "--to", "personal"],
        None,
    )
    .err("NotAuthorized");

    // Personal accounts: their owner's alone, administrators included.
    let mine = active_account(&bus, &daemon, None, alice, "personal", "alice@ecole.fr");
    let his = active_account(&bus, &daemon, None, bob, "personal", "bob@ecole.fr");
    let mut expected = vec![shared.clone(), mine.clone()];
    expected.sort();
    assert_eq!(ids(&bus, alice), expected);
    assert_eq!(ids(&bus, bob), vec![his.clone()]);
    assert_eq!(ids(&bus, admin), vec![shared.clone()]);
    assert_eq!(ids(&bus, None), vec![shared.clone()], "root too");
    for user in [bob, admin, None] {
        mailctl(&bus, user, &["account", "show", &mine], None).err("NotFound");
        mailctl(&bus, user, &["account", "default", &mine], None).err("NotFound");
    }
    for user in [bob, admin] {
        mailctl(&bus, user, &["account", "delete", &mine], None).err("NotFound");
    }
    let owner: serde_json::Value = serde_json::from_str(
        &mailctl(&bus, alice, &["account", "show", &mine, "--json"], None).out(),
    )
    .unwrap();
    assert_eq!(owner["owner"], USER_ALICE);

    // Conversion: shared with one staff member becomes that member's personal account.
    mailctl(
        &bus,
        admin,
        &["account", "convert", &shared, "--to", "personal"],
        None,
    )
    .out();
    assert_eq!(ids(&bus, admin), Vec::<String>::new());
    let converted: serde_json::Value = serde_json::from_str(
        &mailctl(&bus, alice, &["account", "show", &shared, "--json"], None).out(),
    )
    .unwrap();
    assert_eq!(
        (converted["kind"].as_str(), converted["owner"].as_str()),
        (Some("personal"), Some(USER_ALICE))
    );
    // And back, by its owner alone, who stays its only staff member.
    mailctl(
        &bus,
        admin,
        &["account", "convert", &shared, "--to", "establishment"],
        None,
    )
    .err("NotFound");
    mailctl(
        &bus,
        alice,
        &["account", "convert", &shared, "--to", "establishment"],
        None,
    )
    .out();
    let back: serde_json::Value = serde_json::from_str(
        &mailctl(&bus, admin, &["account", "show", &shared, "--json"], None).out(),
    )
    .unwrap();
    assert_eq!(back["staff"], serde_json::json!([USER_ALICE]));

    // Removing alice from the staff takes the account out of her sight.
    mailctl(
        &bus,
        admin,
        &["account", "staff", &shared, "--remove", USER_ALICE],
        None,
    )
    .out();
    mailctl(&bus, alice, &["account", "show", &shared], None).err("NotFound");
    mailctl(&bus, admin, &["account", "delete", &shared], None).out();
    mailctl(&bus, admin, &["account", "show", &shared], None).err("NotFound");
}

fn send(bus: &Bus, user: Option<&str>, account: &str) -> Ctl {
    mailctl(
        bus,
        user,
        &[
            "send",
            "--account",
            account,
            "--to",
            "famille@example.org",
            "--subject",
            "Sortie",
            "--body",
            "Bonjour",
        ],
        None,
    )
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?} failed: {out:?}");
}

/// `@group` on the staff: every member of the Unix group may send, as the user database
/// says at the moment they send, not when the group was named.
#[test]
fn a_unix_group_as_staff() {
    ensure_users();
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, "");
    let (alice, bob, admin) = (Some(USER_ALICE), Some(USER_BOB), Some(USER_ADMIN));
    let shared = active_account(
        &bus,
        &daemon,
        None,
        admin,
        "establishment",
        "profs@ecole.fr",
    );
    let group = format!("@{GROUP_TEACHERS}");

    let e = mailctl(
        &bus,
        admin,
        &["account", "staff", &shared, "--add", "@no-such-group-here"],
        None,
    )
    .err("InvalidInput");
    assert!(e.contains("no Unix group named"), "{e}");
    mailctl(
        &bus,
        alice,
        &["account", "staff", &shared, "--add", &group],
        None,
    )
    .err("NotFound");
    mailctl(
        &bus,
        admin,
        &["account", "staff", &shared, "--add", &group],
        None,
    )
    .out();
    let shown: serde_json::Value = serde_json::from_str(
        &mailctl(&bus, admin, &["account", "show", &shared, "--json"], None).out(),
    )
    .unwrap();
    assert_eq!(shown["staff"], serde_json::json!([group]));

    // alice is in the group, bob is not.
    assert_eq!(ids(&bus, alice), vec![shared.clone()]);
    send(&bus, alice, &shared).out();
    assert_eq!(ids(&bus, bob), Vec::<String>::new());
    send(&bus, bob, &shared).err("NotFound");
    // A group cannot own a personal account.
    mailctl(
        &bus,
        admin,
        &["account", "convert", &shared, "--to", "personal"],
        None,
    )
    .err("InvalidState");

    // Out of the group, alice can no longer send; back in, she can again.
    run(&["gpasswd", "-d", USER_ALICE, GROUP_TEACHERS]);
    let refused = send(&bus, alice, &shared);
    run(&["gpasswd", "-a", USER_ALICE, GROUP_TEACHERS]);
    refused.err("NotFound");
    send(&bus, alice, &shared).out();

    mailctl(
        &bus,
        admin,
        &["account", "staff", &shared, "--remove", &group],
        None,
    )
    .out();
    send(&bus, alice, &shared).err("NotFound");
}

/// `WhoAmI` tells a client whether to show the administrators' pages; `GetRelay` is theirs.
#[test]
fn who_am_i_and_the_relay_settings() {
    ensure_users();
    let bus = Bus::start();
    let password = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(password.path(), "never-shown-42\n").unwrap();
    let _daemon = Daemon::start(
        &bus,
        &format!(
            "[relay]\nhost = \"smtp.ecole.fr\"\nport = 587\nusername = \"ecole\"\npassword_file = {:?}\n",
            password.path()
        ),
    );
    let who = |user| {
        bus.busctl_as(user, api::ACCOUNTS_INTERFACE, "WhoAmI")
            .unwrap()["data"][0]
            .clone()
    };
    let alice = who(Some(USER_ALICE));
    assert_eq!(alice["user"]["data"], USER_ALICE);
    assert_eq!(alice["admin"]["data"], false);
    let admin = who(Some(USER_ADMIN));
    assert_eq!(admin["user"]["data"], USER_ADMIN);
    assert_eq!(admin["admin"]["data"], true);
    assert_eq!(who(None)["admin"]["data"], true, "root");

    let e = bus
        .busctl_as(Some(USER_ALICE), api::OUTBOX_INTERFACE, "GetRelay")
        .unwrap_err();
    assert!(e.contains("administrator"), "{e}");
    let relay = bus
        .busctl_as(Some(USER_ADMIN), api::OUTBOX_INTERFACE, "GetRelay")
        .unwrap()["data"][0]
        .clone();
    assert_eq!(relay["kind"]["data"], "smtp");
    assert_eq!(relay["host"]["data"], "smtp.ecole.fr");
    assert_eq!(relay["port"]["data"], 587);
    assert_eq!(relay["tls"]["data"], "starttls");
    assert_eq!(relay["username"]["data"], "ecole");
    assert!(!relay.to_string().contains("never-shown-42"), "{relay}");
}
