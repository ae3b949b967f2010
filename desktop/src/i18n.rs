//! gettext set-up: English msgids, catalogues in the `postecole` text domain.

use gettextrs::{LocaleCategory, bind_textdomain_codeset, bindtextdomain, setlocale, textdomain};

pub const DOMAIN: &str = "postecole";

/// The catalogue compiled by build.rs, used when the binary runs from the build tree.
const BUILD_LOCALEDIR: &str = concat!(env!("OUT_DIR"), "/locale");

/// Where the catalogues are: `POSTECOLE_LOCALEDIR`, else the system's for an installed binary,
/// else the build tree's.
fn locale_dir() -> String {
    if let Ok(dir) = std::env::var("POSTECOLE_LOCALEDIR") {
        return dir;
    }
    let installed = std::env::current_exe()
        .map(|p| p.starts_with("/usr"))
        .unwrap_or(false);
    if installed {
        "/usr/share/locale".into()
    } else {
        BUILD_LOCALEDIR.into()
    }
}

/// The one unsafe call of the application, as in mailctl: GTK reads the locale only later.
#[allow(unsafe_code)]
pub fn init() {
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        setlocale(LocaleCategory::LcAll, "");
    }
    // A failure here leaves the English msgids on screen, which is still usable.
    let _ = bindtextdomain(DOMAIN, locale_dir());
    let _ = bind_textdomain_codeset(DOMAIN, "UTF-8");
    let _ = textdomain(DOMAIN);
}

/// The translation of `msgid`.
pub fn tr(msgid: &str) -> String {
    gettextrs::gettext(msgid)
}

/// The translation of `msgid` with each `{}` replaced in turn by `args`.
pub fn trf(msgid: &str, args: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = tr(msgid);
    for arg in args {
        match rest.find("{}") {
            Some(at) => {
                out.push_str(&rest[..at]);
                out.push_str(arg);
                rest = rest[at + 2..].to_owned();
            }
            None => break,
        }
    }
    out.push_str(&rest);
    out
}
