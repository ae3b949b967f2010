//! The command line every sendmail implementation understands, read as getopt(3) reads it
//! (`-ti`, `-oi`, `-f addr` and `-faddr` alike), since that is how scripts write it.

/// What the command line asks for.
#[derive(Debug, Default, PartialEq)]
pub struct Options {
    /// `-t`: recipients from the To, Cc and Bcc headers.
    pub from_headers: bool,
    /// Without `-i`/`-oi`, a line holding a single dot ends the message.
    pub dot_ends: bool,
    /// `-f`/`-r`: the envelope sender the caller expects.
    pub sender: Option<String>,
    /// The arguments after the options.
    pub recipients: Vec<String>,
}

/// Why the command line cannot be followed, in the caller's words.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// A mode this door does not offer (`-bs`, `-bd`, `-q`…): what it is.
    Mode(String),
    /// An option no sendmail knows, or one that lacks its value.
    Unknown(String),
    MissingValue(char),
}

/// Options that take a value, glued (`-oi`) or as the next argument (`-f addr`).
const WITH_VALUE: &str = "ABCFLNORVXbdfhopqr";
/// Options without a value that sendmail implementations accept; all but `-t` and `-i` change
/// nothing here.
const FLAGS: &str = "GUimntvx";

pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, Refusal> {
    let mut options = Options {
        dot_ends: true,
        ..Options::default()
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            options.recipients.extend(args.by_ref());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            options.recipients.push(arg);
            // As getopt(3) without GNU's permutation: the first recipient ends the options.
            options.recipients.extend(args.by_ref());
            break;
        }
        for (at, c) in arg[1..].char_indices() {
            if FLAGS.contains(c) {
                match c {
                    't' => options.from_headers = true,
                    'i' => options.dot_ends = false,
                    _ => {}
                }
                continue;
            }
            if !WITH_VALUE.contains(c) {
                return Err(Refusal::Unknown(format!("-{c}")));
            }
            let glued = &arg[1 + at + c.len_utf8()..];
            let value = if !glued.is_empty() {
                glued.to_owned()
            } else if c == 'q' {
                // `-q` alone is a mode of its own (run the queue).
                String::new()
            } else {
                args.next().ok_or(Refusal::MissingValue(c))?
            };
            option(&mut options, c, value)?;
            break;
        }
    }
    Ok(options)
}

fn option(options: &mut Options, c: char, value: String) -> Result<(), Refusal> {
    match c {
        'f' | 'r' => options.sender = Some(value),
        // -oi: the same as -i; every other -o (-oem, -odi, -oee…) is about delivery, which
        // the daemon decides.
        'o' if value == "i" => options.dot_ends = false,
        'b' if value == "m" => {}
        'b' => return Err(Refusal::Mode(format!("-b{value}"))),
        'q' => return Err(Refusal::Mode(format!("-q{value}"))),
        // -F (full name), -B (body type), -N (DSN), -R, -V, -L, -X, -h, -C, -O, -A, -d, -p:
        // accepted, and nothing here depends on them.
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Options, Refusal> {
        parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn what_scripts_and_cron_write() {
        let o = parsed(&["-t", "-i", "-f", "moi@ecole.fr"]).unwrap();
        assert!(o.from_headers && !o.dot_ends);
        assert_eq!(o.sender.as_deref(), Some("moi@ecole.fr"));
        // Debian's cron.
        let o = parsed(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "a@example.org"]).unwrap();
        assert!(!o.from_headers && !o.dot_ends);
        assert_eq!(o.recipients, ["a@example.org"]);
        // cronie, and options clustered as getopt allows.
        let o = parsed(&["-FCronDaemon", "-odi", "-oem", "-oi", "-t", "-froot"]).unwrap();
        assert!(o.from_headers && !o.dot_ends);
        assert_eq!(o.sender.as_deref(), Some("root"));
        let o = parsed(&["-ti", "-bm", "--", "-odd@example.org"]).unwrap();
        assert!(o.from_headers && !o.dot_ends);
        assert_eq!(o.recipients, ["-odd@example.org"]);
        let o = parsed(&["a@example.org", "-t"]).unwrap();
        assert!(o.dot_ends && !o.from_headers, "options end at a recipient");
        assert_eq!(o.recipients, ["a@example.org", "-t"]);
    }

    #[test]
    fn modes_that_are_not_sending_are_refused() {
        for (args, mode) in [
            (&["-bs"][..], "-bs"),
            (&["-bd"][..], "-bd"),
            (&["-b", "p"][..], "-bp"),
            (&["-q"][..], "-q"),
            (&["-q30m"][..], "-q30m"),
        ] {
            assert_eq!(parsed(args), Err(Refusal::Mode(mode.into())), "{args:?}");
        }
        assert_eq!(parsed(&["-Y"]), Err(Refusal::Unknown("-Y".into())));
        assert_eq!(parsed(&["-t", "-f"]), Err(Refusal::MissingValue('f')));
    }
}
