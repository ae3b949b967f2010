//! Compiles `po/*.po` into `$OUT_DIR/locale/<lang>/LC_MESSAGES/postecole.mo`, so that a
//! development build runs in French without being installed (`make install` compiles the same
//! catalogue into /usr/share/locale).

use std::path::Path;
use std::process::Command;

fn main() {
    let po_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../po");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("locale");
    println!("cargo::rerun-if-changed={}", po_dir.display());
    for entry in std::fs::read_dir(&po_dir).expect("the po/ folder") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "po") {
            continue;
        }
        println!("cargo::rerun-if-changed={}", path.display());
        let lang = path.file_stem().unwrap().to_str().unwrap();
        let dir = out.join(lang).join("LC_MESSAGES");
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("msgfmt")
            .arg("--check")
            .arg("-o")
            .arg(dir.join("postecole.mo"))
            .arg(&path)
            .status()
            .expect("msgfmt (package gettext) must be installed");
        assert!(status.success(), "msgfmt refused {}", path.display());
    }
}
