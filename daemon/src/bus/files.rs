//! Descriptors a caller passes over the bus (attachments, the recovery file, an export's
//! destination) become files here, and only regular ones: a pipe or a socket that nobody
//! writes or reads would hold whichever thread touched it for ever.

use std::fs::File;
use std::io::Read;

use postecole_dbus::Error as BusError;
use zbus::OwnedFd;

/// The recovery file is a few hundred bytes; anything much larger is not one.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The descriptor as a file, if it is a regular one; `what` names it in the refusal.
pub fn regular(fd: OwnedFd, what: &str) -> Result<File, BusError> {
    let file = File::from(std::os::fd::OwnedFd::from(fd));
    // fstat answers at once whatever the descriptor is.
    let meta = file
        .metadata()
        .map_err(|e| BusError::InvalidInput(format!("{what} cannot be examined: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(BusError::InvalidInput(format!(
            "{what} is not a regular file (pipes, sockets and devices are refused)"
        )));
    }
    Ok(file)
}

/// The recovery file's text, read off the async workers within the caller's share of the
/// pool for callers' files.
pub async fn read_key_file(uid: u32, fd: OwnedFd) -> Result<String, BusError> {
    let file = regular(fd, "the recovery file")?;
    crate::blocking::CALLER_FILES
        .run(uid, move || {
            let mut text = String::new();
            file.take(MAX_KEY_FILE_BYTES)
                .read_to_string(&mut text)
                .map(|_| text)
        })
        .await
        .map_err(|e| BusError::InvalidInput(format!("the recovery file: {e}")))?
        .map_err(|e| BusError::InvalidInput(format!("the recovery file cannot be read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(file: impl Into<std::os::fd::OwnedFd>) -> OwnedFd {
        OwnedFd::from(file.into())
    }

    #[tokio::test]
    async fn a_pipe_is_refused_at_once_and_a_regular_file_is_read() {
        let (reader, _writer) = std::io::pipe().unwrap();
        let err = read_key_file(1000, fd(reader)).await.unwrap_err();
        assert!(
            matches!(&err, BusError::InvalidInput(m) if m.contains("not a regular file")),
            "{err:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cleRecuperation.crbee");
        std::fs::write(&path, "postecole-recovery-key: 1\n").unwrap();
        let text = read_key_file(1000, fd(File::open(&path).unwrap()))
            .await
            .unwrap();
        assert_eq!(text, "postecole-recovery-key: 1\n");
        let socket = std::os::unix::net::UnixDatagram::unbound().unwrap();
        assert!(regular(fd(socket), "the export").is_err());
    }
}
