//! Several Unix users on one PC: who sees and uses which account, decided from the bus's own
//! credentials of each call.

use postecole_tests::{
    Bus, Daemon, USER_ADMIN, USER_ALICE, USER_BOB, active_account, create, ensure_users, mailctl,
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
