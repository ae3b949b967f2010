//! The files that install the window as a desktop application pass the freedesktop checks.

use std::path::{Path, PathBuf};
use std::process::Command;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

fn passes(program: &str, args: &[&str], file: &Path) {
    let out = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} refused {}: {said}",
        file.display()
    );
    assert!(
        !said.contains("warning") && !said.contains("error:"),
        "{program}: {said}"
    );
}

#[test]
fn metainfo_passes_appstreamcli_validate() {
    passes(
        "appstreamcli",
        &["validate", "--no-net"],
        &data("org.postecole.Mail.metainfo.xml"),
    );
}

#[test]
fn desktop_file_passes_desktop_file_validate() {
    let file = data("org.postecole.Mail.desktop");
    passes("desktop-file-validate", &[], &file);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\nExec=postecole-mail\n"));
    assert!(text.contains("\nIcon=org.postecole.Mail\n"));
    // GApplication finds its desktop file by the application id.
    assert_eq!(postecole_desktop::APP_ID, "org.postecole.Mail");
}

#[test]
fn icon_is_a_square_svg() {
    let svg = std::fs::read_to_string(data("org.postecole.Mail.svg")).unwrap();
    assert!(svg.starts_with("<svg ") && svg.contains("viewBox=\"0 0 128 128\""));
}
