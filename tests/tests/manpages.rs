//! postecoled(8) exists in English and in French; the French page must not fall behind when a
//! key is added to the English one. What a translation leaves untouched (keys, `[sections]`,
//! values, commands, D-Bus names in bold; paths in italic) is compared, not the prose.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output};

use postecole_tests::workspace_root;

const ENGLISH: &str = "doc/postecoled.8";
const FRENCH: &str = "doc/fr/postecoled.8";

/// A macro line's arguments as troff splits them: on blanks, except inside double quotes
/// (where `""` is a quote) and after a backslash (`\ ` is a space within the argument).
fn macro_args(rest: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let Some(&first) = chars.peek() else {
            return args;
        };
        let mut arg = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.next_if_eq(&'"').is_none() {
                        break;
                    }
                    arg.push('"');
                } else {
                    arg.push(c);
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ' ' && *c != '\t') {
                arg.push(c);
                if c == '\\'
                    && let Some(escaped) = chars.next()
                {
                    arg.push(escaped);
                }
            }
        }
        args.push(arg);
    }
}

/// The text a reader sees for the escapes these pages use.
fn plain(text: &str) -> String {
    text.replace("\\(dq", "\"")
        .replace("\\-", "-")
        .replace("\\ ", " ")
        .replace("\\~", " ")
        .replace("\\%", "")
        .replace("\\&", "")
        .replace("\\e", "\\")
        .trim()
        .to_owned()
}

/// Inline `\fB…\fR` and `\fI…\fR` runs of a text line.
fn inline_literals(line: &str, out: &mut BTreeSet<String>) {
    for (i, _) in line.match_indices("\\f") {
        let font = line[i + 2..].chars().next();
        if !matches!(font, Some('B' | 'I')) {
            continue;
        }
        let run = &line[i + 3..];
        let end = run.find("\\f").unwrap_or(run.len());
        out.insert(plain(&run[..end]));
    }
}

/// Every run a man page sets in bold or italic, from the font macros (`.B`, `.I`, and the
/// alternating `.BR`, `.RB`, `.BI`, `.IB`, `.IR`, `.RI`) and from inline font escapes.
fn literals(page: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in page.lines() {
        let Some(request) = line.strip_prefix('.') else {
            inline_literals(line, &mut out);
            continue;
        };
        let (name, rest) = request.split_once(' ').unwrap_or((request, ""));
        let fonts: Vec<char> = match name {
            "B" | "I" => {
                out.insert(plain(&macro_args(rest).join(" ")));
                continue;
            }
            "BR" | "RB" | "BI" | "IB" | "IR" | "RI" => name.chars().collect(),
            _ => continue,
        };
        for (i, arg) in macro_args(rest).iter().enumerate() {
            if fonts[i % 2] != 'R' {
                out.insert(plain(arg));
            }
            inline_literals(arg, &mut out);
        }
    }
    out.remove("");
    out
}

fn count_requests(page: &str, request: &str) -> usize {
    page.lines()
        .filter(|l| *l == request || l.starts_with(&format!("{request} ")))
        .count()
}

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_french_postecoled_page_names_every_key_section_and_path_of_the_english_one() {
    let english = read(ENGLISH);
    let french = read(FRENCH);
    let wanted = literals(&english);
    // Were the parser to miss the page's markup, an empty set would pass: it must find these.
    for anchor in [
        "state_dir",
        "[relay]",
        "[relay.oauth2]",
        "[queue]",
        "[limits]",
        "client_secret_file",
        "max_codes_per_day",
        "org.postecole.Mail1.Error.DiskFull",
        "auth = \"password\"",
        "/etc/postecole/postecoled.toml",
        "archive/ID/",
    ] {
        assert!(
            wanted.contains(anchor),
            "{anchor} not found among the bold and italic runs of {ENGLISH}: {wanted:?}"
        );
    }
    let found = literals(&french);
    let missing: Vec<&String> = wanted.difference(&found).collect();
    assert!(
        missing.is_empty(),
        "{FRENCH} lacks what {ENGLISH} sets in bold or italic (keys, sections, values, \
         commands, paths: translate the new text, leave these as they are): {missing:?}"
    );
    for request in [".SH", ".TP"] {
        assert_eq!(
            count_requests(&french, request),
            count_requests(&english, request),
            "{FRENCH} and {ENGLISH} differ in their number of {request}: a section or an entry \
             is missing from one"
        );
    }
}

/// `man` runs the page through preconv, which the UTF-8 French text needs; plain groff then
/// does the same with `-k`. Every warning category (`w`), not only man-db's default (`mac`).
/// None when neither is installed.
fn render(page: &Path) -> Option<(&'static str, Output)> {
    let man = Command::new("man")
        .args(["--warnings=w", "-l"])
        .arg(page)
        .env("LC_ALL", "C.UTF-8")
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .output();
    match man {
        Ok(output) => return Some(("man --warnings=w -l", output)),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => panic!("cannot run man: {e}"),
    }
    let groff = Command::new("groff")
        // -P-cbou: plain text, without grotty's overstrikes, for the checks on what is read.
        .args(["-k", "-man", "-Tutf8", "-ww", "-P-cbou"])
        .arg(page)
        .env("LC_ALL", "C.UTF-8")
        .output();
    match groff {
        Ok(output) => Some(("groff -k -man -Tutf8 -ww", output)),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run groff: {e}"),
    }
}

#[test]
fn the_french_postecoled_page_renders_without_warnings() {
    let page = workspace_root().join(FRENCH);
    let Some((how, output)) = render(&page) else {
        eprintln!("skipped: neither man nor groff is installed to render {FRENCH}");
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let warnings = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{how} {FRENCH} failed ({}): {warnings}",
        output.status
    );
    assert!(
        warnings.trim().is_empty(),
        "{how} {FRENCH} warns:\n{warnings}"
    );
    // Rendered as French text, not lost to an encoding mix-up.
    for heading in ["NOM", "FICHIERS", "VOIR AUSSI", "démon", "récupération"] {
        assert!(
            text.contains(heading),
            "{heading} missing from what {how} rendered of {FRENCH}:\n{text}"
        );
    }
}
