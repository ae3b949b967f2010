//! The daemon's folders are its architecture (ARCHITECTURE.md): each top-level module may use
//! only the modules listed for it here, and the list has no cycle. A `crate::` path that
//! crosses a layer upwards fails this test, naming the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it may use. The order of the data: bus → accounts / outbox → queue →
/// archive, with the records and the store at the bottom and a few leaves anyone may use.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "bus",
        &[
            "accounts", "outbox", "queue", "archive", "authz", "model", "error", "blocking",
        ],
    ),
    (
        "outbox",
        &[
            "accounts", "queue", "authz", "model", "error", "config", "validate", "oauth",
        ],
    ),
    (
        "accounts",
        &[
            "queue", "archive", "authz", "model", "store", "error", "config", "clock", "secret",
            "validate", "blocking",
        ],
    ),
    (
        "queue",
        &[
            "archive", "model", "store", "config", "clock", "secret", "ballast", "oauth",
        ],
    ),
    ("oauth", &["config", "clock", "secret"]),
    ("archive", &["model", "secret"]),
    ("authz", &["model", "blocking"]),
    ("error", &["authz", "queue", "store", "blocking"]),
    ("store", &["model"]),
    ("model", &[]),
    ("config", &[]),
    ("clock", &[]),
    ("secret", &[]),
    ("validate", &[]),
    ("blocking", &[]),
    ("ballast", &[]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// The top-level modules named after `crate::` in `text`, including `crate::{a, b::c}`.
fn crate_uses(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut used = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        used.insert(ident(group[start..i].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        used.insert(ident(group[start..i].trim()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            used.insert(ident(rest));
        }
    }
    used.remove("");
    used
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if name == "main" || name == "lib" {
            continue;
        }
        let Some(may) = allowed.get(name.as_str()) else {
            problems.push(format!(
                "{name}: a new module; give it a layer in this test"
            ));
            continue;
        };
        let mut files = Vec::new();
        rust_files(&path, &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in crate_uses(&text) {
                if used != name && !may.contains(used.as_str()) {
                    problems.push(format!("{}: uses crate::{used}", file.display()));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_layers_have_no_cycle() {
    fn visit<'a>(
        m: &'a str,
        graph: &BTreeMap<&'a str, &'a [&'a str]>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        assert!(!path.contains(&m), "cycle: {} → {m}", path.join(" → "));
        path.push(m);
        for dep in graph.get(m).copied().unwrap_or_default() {
            visit(dep, graph, path, done);
        }
        path.pop();
        done.insert(m);
    }
    let graph: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_parser_sees_grouped_and_nested_paths() {
    let uses = crate_uses("use crate::{secret, queue::{self, Queue}};\nx = crate::model::Slot;");
    assert_eq!(
        uses.into_iter().collect::<Vec<_>>(),
        ["model", "queue", "secret"]
    );
}
