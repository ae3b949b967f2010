//! The checked-in `dbus/org.postecole.Mail1.xml` is the contract other clients are written
//! against; this fails when the running daemon's interfaces drift from it.
//! `POSTECOLE_BLESS=1 cargo test --test introspection` rewrites the file after a deliberate change.

use postecole_tests::{Bus, Daemon, api, workspace_root};

/// Our `<interface>` elements only, comments dropped and blanks between tags removed.
fn our_interfaces(xml: &str) -> Vec<String> {
    let mut without_comments = String::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<!--") {
        without_comments.push_str(&rest[..start]);
        let end = rest[start..].find("-->").expect("closed comment") + start + 3;
        rest = &rest[end..];
    }
    without_comments.push_str(rest);
    let mut out = Vec::new();
    let mut rest = without_comments.as_str();
    while let Some(start) = rest.find("<interface name=\"org.postecole.") {
        let end = rest[start..]
            .find("</interface>")
            .expect("closed interface")
            + start
            + 12;
        let block: String = rest[start..end]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        out.push(block);
        rest = &rest[end..];
    }
    out
}

fn indent(block: &str) -> String {
    let mut depth = 1;
    let mut out = String::new();
    for line in block.lines() {
        if line.starts_with("</") {
            depth -= 1;
        }
        out.push_str(&"  ".repeat(depth));
        out.push_str(line);
        out.push('\n');
        if !line.starts_with("</") && !line.ends_with("/>") {
            depth += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_matches_the_checked_in_xml() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus, "");
    let conn = bus.connect().await;
    let proxy = zbus::fdo::IntrospectableProxy::builder(&conn)
        .destination(api::BUS_NAME)
        .path(api::OBJECT_PATH)
        .build()
        .await
        .unwrap();
    let live = our_interfaces(&proxy.introspect().await.unwrap());
    assert!(
        live.iter()
            .any(|i| i.starts_with(&format!("<interface name=\"{}\"", api::ACCOUNTS_INTERFACE))),
        "the daemon serves no Accounts interface"
    );

    let path = workspace_root().join("dbus/org.postecole.Mail1.xml");
    if std::env::var_os("POSTECOLE_BLESS").is_some() {
        let body: String = live.iter().map(|i| indent(i)).collect();
        std::fs::write(
            &path,
            format!(
                "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \
                 \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n\
                 <!--\n  postecoled serves these interfaces as org.postecole.Mail1 on the system bus.\n  \
                 Dictionaries (a{{sv}}) use the field names of `mailctl --json`.\n  \
                 Errors are org.postecole.Mail1.Error.{{NotAuthorized,NotFound,InvalidInput,WrongCode,\n  \
                 CodeExpired,TooManyAttempts,RateLimited,InvalidState,RelayUnavailable,Internal}}.\n  \
                 Generated from the running daemon (POSTECOLE_BLESS=1); a test keeps them equal.\n\
                 -->\n\
                 <node name=\"/org/postecole/Mail1\">\n{body}</node>\n"
            ),
        )
        .unwrap();
    }
    let checked_in =
        our_interfaces(&std::fs::read_to_string(&path).expect("dbus/org.postecole.Mail1.xml"));
    assert_eq!(
        live, checked_in,
        "the daemon's D-Bus interfaces differ from dbus/org.postecole.Mail1.xml; \
         if the change is deliberate, rerun with POSTECOLE_BLESS=1"
    );
}
