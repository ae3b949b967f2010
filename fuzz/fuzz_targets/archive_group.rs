//! An archive log read back without the daemon's records (`mailctl archive open`, a damaged
//! store). First byte even: the rest is a group's clear stream, as decrypting a group yields
//! it (what anyone holding the account's public key could have sealed). Odd: the rest is a raw
//! log file, its groups found and opened with a key. Every group opens or is refused, never a
//! panic nor an allocation its size does not justify.
#![no_main]

use std::io::{Cursor, Write};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use postecole_archive::Unlocked;
use postecole_archive::log::{Group, groups, open_group, read_group, read_index};

static KEY: LazyLock<age::x25519::Identity> = LazyLock::new(age::x25519::Identity::generate);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(group) = read_index(Box::new(Cursor::new(rest.to_vec()))) {
            read_all(group, rest.len());
        }
        return;
    }
    let mut file = tempfile::tempfile_in(tmp()).unwrap();
    file.write_all(rest).unwrap();
    let key = Unlocked(KEY.clone());
    let Ok(found) = groups(&file) else {
        return;
    };
    for (offset, len) in found {
        assert!(offset + len <= rest.len() as u64);
        if let Ok(group) = open_group(file.try_clone().unwrap(), offset, len, &key) {
            read_all(group, len as usize);
        }
        let _ = read_group(&file, offset, len, &key);
    }
});

/// Every entry's bytes, none longer than the group they came from.
fn read_all(mut group: Group, len: usize) {
    for entry in group.entries.clone() {
        if let Ok(bytes) = group.bytes(&entry) {
            assert!(bytes.len() <= len);
        }
    }
}

fn tmp() -> &'static std::path::Path {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::path::Path::new("/tmp")
    }
}
