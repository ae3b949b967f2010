//! mailctl speaks the language of the caller's locale through glibc's gettext: English
//! message ids, catalogues in the text domain `postecole` (shared with the desktop
//! application), compiled from `po/*.po` and installed under /usr/share/locale.

use std::fmt::Display;
use std::path::PathBuf;

use gettextrs::LocaleCategory;

pub const DOMAIN: &str = "postecole";

/// Where the catalogues are looked up; `POSTECOLE_LOCALEDIR` points elsewhere (tests, a
/// build tree), as `TEXTDOMAINDIR` does for shell scripts.
pub fn locale_dir() -> PathBuf {
    std::env::var_os("POSTECOLE_LOCALEDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/locale"))
}

/// Takes the language from the environment (LANGUAGE, LC_ALL, LC_MESSAGES, LANG). An unknown
/// locale or a missing catalogue leaves mailctl in English, which is what gettext answers.
#[allow(unsafe_code)]
pub fn init() {
    // SAFETY: setlocale is not thread-safe; this runs first thing in main, before any other
    // thread exists or reads the locale.
    let _ = unsafe { gettextrs::setlocale(LocaleCategory::LcAll, "") };
    let _ = gettextrs::bindtextdomain(DOMAIN, locale_dir());
    let _ = gettextrs::bind_textdomain_codeset(DOMAIN, "UTF-8");
    let _ = gettextrs::textdomain(DOMAIN);
}

pub fn tr(msgid: &str) -> String {
    if msgid.is_empty() {
        // gettext("") is the catalogue's header, never a translation.
        return String::new();
    }
    gettextrs::gettext(msgid)
}

pub fn trn(one: &str, many: &str, n: u64) -> String {
    gettextrs::ngettext(one, many, u32::try_from(n).unwrap_or(u32::MAX))
}

/// Replaces each `{name}` of a translated sentence: translators may move them around.
pub fn fill(text: String, args: &[(&str, &dyn Display)]) -> String {
    let mut text = text;
    for (name, value) in args {
        text = text.replace(&format!("{{{name}}}"), &value.to_string());
    }
    text
}

/// The message in the caller's language, its `{name}` placeholders filled: `t!` with a
/// literal English message id, then `name = value` pairs.
#[macro_export]
macro_rules! t {
    ($s:literal) => {
        $crate::i18n::tr($s)
    };
    ($s:literal, $($k:ident = $v:expr),+ $(,)?) => {
        $crate::i18n::fill($crate::i18n::tr($s), &[$((stringify!($k), &$v as &dyn std::fmt::Display)),+])
    };
}

/// Plural forms as the language has them: `tn!` with the singular and plural English ids and
/// the count, which fills `{n}`.
#[macro_export]
macro_rules! tn {
    ($one:literal, $many:literal, $n:expr $(, $k:ident = $v:expr)* $(,)?) => {{
        let n = $n as u64;
        $crate::i18n::fill(
            $crate::i18n::trn($one, $many, n),
            &[("n", &n as &dyn std::fmt::Display) $(, (stringify!($k), &$v as &dyn std::fmt::Display))*],
        )
    }};
}

/// The command-line definition with every help text in the caller's language (also what the
/// man pages are made from).
pub fn translate(cmd: clap::Command) -> clap::Command {
    // clap keeps headings as `&'static str`: each one is translated once for the process.
    static HEADINGS: std::sync::OnceLock<[&'static str; 3]> = std::sync::OnceLock::new();
    let [commands, options, arguments] = *HEADINGS.get_or_init(|| {
        [
            crate::t!("Commands"),
            crate::t!("Options"),
            crate::t!("Arguments"),
        ]
        .map(|s| &*s.leak())
    });
    let mut cmd = cmd
        .help_template(format!(
            "{{before-help}}{{about-with-newline}}\n{} {{usage}}\n\n{{all-args}}{{after-help}}",
            crate::t!("Usage:")
        ))
        .subcommand_help_heading(commands);
    if let Some(about) = cmd.get_about().map(ToString::to_string) {
        cmd = cmd.about(tr(&about));
    }
    if let Some(about) = cmd.get_long_about().map(ToString::to_string) {
        cmd = cmd.long_about(tr(&about));
    }
    if let Some(after) = cmd.get_after_long_help().map(ToString::to_string) {
        cmd = cmd.after_long_help(tr(&after));
    }
    cmd = cmd.mut_args(|arg| {
        let mut arg = arg;
        if let Some(help) = arg.get_help().map(ToString::to_string) {
            arg = arg.help(tr(&help));
        }
        if let Some(help) = arg.get_long_help().map(ToString::to_string) {
            arg = arg.long_help(tr(&help));
        }
        if arg.get_help_heading().is_none() {
            let heading = if arg.is_positional() {
                arguments
            } else {
                options
            };
            arg = arg.help_heading(heading);
        }
        arg
    });
    cmd.mut_subcommands(translate)
}

/// Every text of the command-line definition a translator must see, in English.
#[cfg(test)]
pub fn texts(cmd: &clap::Command, out: &mut Vec<String>) {
    let mut push = |s: Option<String>| {
        if let Some(s) = s.filter(|s| !s.is_empty()) {
            out.push(s);
        }
    };
    push(cmd.get_about().map(ToString::to_string));
    push(cmd.get_long_about().map(ToString::to_string));
    push(cmd.get_after_long_help().map(ToString::to_string));
    for arg in cmd.get_arguments() {
        push(arg.get_help().map(ToString::to_string));
        push(arg.get_long_help().map(ToString::to_string));
    }
    for sub in cmd.get_subcommands() {
        texts(sub, out);
    }
}

/// The entries of a PO file, unescaped, with their translations (none when fuzzy); a small
/// reader, enough for the catalogue's tests.
#[cfg(test)]
pub fn po_entries(po: &str) -> Vec<(String, Vec<String>)> {
    fn unquote(line: &str) -> String {
        let line = line.trim();
        let inner = line.strip_prefix('"').unwrap_or(line);
        let inner = inner.strip_suffix('"').unwrap_or(inner);
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        out
    }
    let mut entries = Vec::new();
    let mut id = None::<String>;
    let mut plural = None::<String>;
    let mut strs: Vec<String> = Vec::new();
    let mut field = 0; // 1: msgid, 2: msgid_plural, 3: msgstr
    // msgfmt leaves fuzzy entries out (msgcat marks conflicting ones so): untranslated.
    let mut fuzzy = false;
    let mut fuzzy_next = false;
    for line in po.lines() {
        let line = line.trim();
        if line.starts_with("#,") && line.contains("fuzzy") {
            fuzzy_next = true;
        } else if let Some(rest) = line.strip_prefix("msgid ") {
            if let Some(id) = id.take() {
                if fuzzy {
                    strs.clear();
                }
                if let Some(plural) = plural.take() {
                    entries.push((plural, strs.clone()));
                }
                entries.push((id, std::mem::take(&mut strs)));
            }
            fuzzy = std::mem::take(&mut fuzzy_next);
            id = Some(unquote(rest));
            field = 1;
        } else if let Some(rest) = line.strip_prefix("msgid_plural ") {
            plural = Some(unquote(rest));
            field = 2;
        } else if line.starts_with("msgstr") {
            let at = line.find(' ').unwrap_or(line.len());
            strs.push(unquote(&line[at..]));
            field = 3;
        } else if line.starts_with('"') {
            match field {
                1 => id.get_or_insert_default().push_str(&unquote(line)),
                2 => plural.get_or_insert_default().push_str(&unquote(line)),
                3 => {
                    if let Some(last) = strs.last_mut() {
                        last.push_str(&unquote(line));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(id) = id.take() {
        if fuzzy {
            strs.clear();
        }
        if let Some(plural) = plural.take() {
            entries.push((plural, strs.clone()));
        }
        entries.push((id, strs));
    }
    entries
}

/// The message ids passed to `t!`/`tn!` in a source file (string literals as Rust reads them).
#[cfg(test)]
pub fn source_msgids(source: &str) -> Vec<String> {
    fn literal(s: &str) -> Option<(String, usize)> {
        let s_start = s.find('"')?;
        if !s[..s_start].trim().is_empty() {
            return None;
        }
        let mut out = String::new();
        let bytes: Vec<char> = s[s_start + 1..].chars().collect();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                '"' => {
                    let used: usize = s[s_start + 1..]
                        .chars()
                        .take(i + 1)
                        .map(char::len_utf8)
                        .sum();
                    return Some((out, s_start + 1 + used));
                }
                '\\' => {
                    i += 1;
                    match bytes.get(i) {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some('\n') => {
                            while bytes.get(i + 1).is_some_and(|c| c.is_whitespace()) {
                                i += 1;
                            }
                        }
                        Some(c) => out.push(*c),
                        None => {}
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        None
    }
    let mut ids = Vec::new();
    // Spelt in two pieces so that this scanner does not find itself.
    for mac in [concat!("t", "!("), concat!("tn", "!(")] {
        let mut rest = source;
        while let Some(at) = rest.find(mac) {
            // `format!(` ends in `t!(` too: only the macro itself counts.
            let inside_word = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            rest = &rest[at + mac.len()..];
            if inside_word {
                continue;
            }
            if let Some((first, used)) = literal(rest) {
                ids.push(first);
                if mac.starts_with("tn") {
                    let after = rest[used..].trim_start().trim_start_matches(',');
                    if let Some((second, _)) = literal(after) {
                        ids.push(second);
                    }
                }
            }
        }
    }
    ids
}
