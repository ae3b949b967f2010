//! A `cleRecuperation.crbee` a user hands in (Recover, archive unlock, `mailctl archive open`):
//! any text gets an answer or a sentence, never a panic; a file it accepts says it again
//! when written back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((account, key)) = postecole_archive::parse_recovery_file(text) {
        let again = postecole_archive::recovery_file(&account, "a@b.fr", 1, &key);
        assert_eq!(
            postecole_archive::parse_recovery_file(&again),
            Ok((account, key))
        );
    }
});
