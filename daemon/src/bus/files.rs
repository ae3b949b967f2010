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

/// How much of a stream is handed to the caller's file at once.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Runs `produce` on a blocking thread, writing what it writes into the caller's `file` chunk
/// by chunk, each chunk within the caller's share of the pool and its time limit: an export of
/// any size goes through, while a file that stops taking data stops the export.
pub async fn write_streamed<T: Send + 'static>(
    uid: u32,
    file: File,
    produce: impl FnOnce(&mut ChunkSender) -> std::io::Result<T> + Send + 'static,
) -> Result<T, BusError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let producer = tokio::task::spawn_blocking(move || {
        let mut out = ChunkSender {
            tx,
            buffer: Vec::with_capacity(CHUNK_BYTES),
        };
        let result = produce(&mut out);
        std::io::Write::flush(&mut out).and(result)
    });
    let file = std::sync::Arc::new(file);
    // Owns the receiver: when it ends, early on a write error, the producer's next send fails.
    let written = async move {
        while let Some(chunk) = rx.recv().await {
            let file = file.clone();
            crate::blocking::CALLER_FILES
                .run(uid, move || std::io::Write::write_all(&mut &*file, &chunk))
                .await
                .map_err(|e| BusError::InvalidInput(format!("the export: {e}")))?
                .map_err(|e| BusError::InvalidInput(format!("cannot write the export: {e}")))?;
        }
        Ok(())
    };
    let written: Result<(), BusError> = written.await;
    let produced = producer
        .await
        .map_err(|e| BusError::Internal(format!("the export stopped: {e}")))?;
    written?;
    produced.map_err(|e| BusError::Internal(format!("the archive could not be read: {e}")))
}

/// The writing end handed to a producer: buffers a chunk, then waits for the caller's file to
/// take it.
pub struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buffer: Vec<u8>,
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "export stopped"))
    }
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

    #[tokio::test]
    async fn a_stream_larger_than_a_chunk_is_written_whole_and_a_failing_file_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.mbox");
        let file = File::create(&path).unwrap();
        let total = write_streamed(1000, file, |out| {
            for i in 0..3000u32 {
                std::io::Write::write_all(out, &[(i % 251) as u8; 1000])?;
            }
            Ok(3000)
        })
        .await
        .unwrap();
        assert_eq!(total, 3000);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3_000_000);
        // A file opened read-only refuses the first chunk: the producer stops, nothing hangs.
        let read_only = File::open(&path).unwrap();
        let err = write_streamed::<()>(1000, read_only, |out| {
            loop {
                std::io::Write::write_all(out, &[0u8; 1000])?;
            }
        })
        .await
        .unwrap_err();
        assert!(matches!(err, BusError::InvalidInput(_)), "{err:?}");
    }
}
