//! Every string the window shows goes through gettext and has its French translation.

use std::path::Path;

fn unescape(s: &str) -> String {
    s.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// The msgids of `tr("…")` and `trf("…", …)` calls in the desktop's sources.
fn msgids_in_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for call in ["tr(", "trf("] {
            for (at, _) in text.match_indices(call) {
                let before = text[..at].chars().last();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let rest = text[at + call.len()..].trim_start().trim_start_matches('&');
                let Some(rest) = rest.strip_prefix('"') else {
                    continue;
                };
                let mut end = 0;
                let bytes = rest.as_bytes();
                while bytes[end] != b'"' || bytes[end - 1] == b'\\' {
                    end += 1;
                }
                out.push((path.display().to_string(), unescape(&rest[..end])));
            }
        }
    }
    out
}

/// msgid → msgstr of a PO file written one line per string, as po/fr.po is.
fn catalogue(po: &str) -> std::collections::HashMap<String, String> {
    let mut map = std::collections::HashMap::new();
    let mut id = None;
    for line in po.lines() {
        if let Some(s) = line.strip_prefix("msgid \"") {
            id = Some(unescape(s.strip_suffix('"').unwrap()));
        } else if let Some(s) = line.strip_prefix("msgstr \"")
            && let Some(id) = id.take()
        {
            map.insert(id, unescape(s.strip_suffix('"').unwrap()));
        }
    }
    map
}

#[test]
fn every_msgid_has_a_french_translation() {
    let po =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../po/fr.po")).unwrap();
    let fr = catalogue(&po);
    let ids = msgids_in_sources();
    assert!(ids.len() > 100, "only {} msgids found", ids.len());
    let missing: Vec<_> = ids
        .iter()
        .filter(|(_, id)| fr.get(id).is_none_or(|s| s.is_empty()))
        .collect();
    assert!(missing.is_empty(), "untranslated: {missing:#?}");
    for (_, id) in &ids {
        let placeholders = |s: &str| s.matches("{}").count();
        assert_eq!(
            placeholders(id),
            placeholders(&fr[id]),
            "placeholders differ in {id:?}"
        );
    }
}

#[test]
fn the_help_page_words_are_on_screen() {
    let po =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../po/fr.po")).unwrap();
    let fr = catalogue(&po);
    for (id, word) in [
        ("Establishment account", "Compte établissement"),
        ("Personal account", "Compte personnel"),
        ("New", "Nouveau"),
        ("Label", "Libellé"),
        ("E-mail address", "Adresse e-mail"),
        ("Next", "Suivant"),
        ("Code", "Code"),
        ("Secret question", "Question secrète"),
        ("Answer", "Réponse"),
        ("Validate", "Valider"),
        ("Sending follow-up", "Suivi des envois"),
    ] {
        assert_eq!(fr.get(id).map(String::as_str), Some(word), "{id}");
    }
}

#[test]
fn every_source_with_strings_is_in_potfiles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let potfiles = std::fs::read_to_string(root.join("../po/POTFILES")).unwrap();
    let mut sources: Vec<String> = msgids_in_sources()
        .into_iter()
        .map(|(path, _)| {
            let name = Path::new(&path).file_name().unwrap().to_string_lossy();
            format!("desktop/src/{name}")
        })
        .collect();
    sources.sort();
    sources.dedup();
    for source in sources {
        assert!(
            potfiles.lines().any(|l| l == source),
            "{source} not in po/POTFILES"
        );
    }
}
