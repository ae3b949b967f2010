//! The caller's language for the sentences of a refusal, through glibc's gettext and the
//! catalogues mailctl installs (text domain `postecole`). Set up only when there is something
//! to say: a message that goes through costs no locale loading.

use std::fmt::Display;

pub const DOMAIN: &str = "postecole";

/// Takes the language from the environment, once the bus work is over and no other thread of
/// this process is left.
#[allow(unsafe_code)]
pub fn init() {
    // SAFETY: setlocale is not thread-safe; main calls this after the runtime and its threads
    // are gone, before anything else reads the locale.
    let _ = unsafe { gettextrs::setlocale(gettextrs::LocaleCategory::LcAll, "") };
    let dir = std::env::var_os("POSTECOLE_LOCALEDIR").unwrap_or_else(|| "/usr/share/locale".into());
    let _ = gettextrs::bindtextdomain(DOMAIN, std::path::PathBuf::from(dir));
    let _ = gettextrs::bind_textdomain_codeset(DOMAIN, "UTF-8");
    let _ = gettextrs::textdomain(DOMAIN);
}

pub fn tr(msgid: &str) -> String {
    gettextrs::gettext(msgid)
}

/// Replaces each `{name}` of a translated sentence: translators may move them around.
pub fn fill(mut text: String, args: &[(&str, &dyn Display)]) -> String {
    for (name, value) in args {
        text = text.replace(&format!("{{{name}}}"), &value.to_string());
    }
    text
}

/// The sentence in the caller's language (`t!` as in mailctl, whose failure sentences this
/// binary shares).
#[macro_export]
macro_rules! t {
    ($s:literal) => {
        $crate::i18n::tr($s)
    };
    ($s:literal, $($k:ident = $v:expr),+ $(,)?) => {
        $crate::i18n::fill($crate::i18n::tr($s), &[$((stringify!($k), &$v as &dyn std::fmt::Display)),+])
    };
}
