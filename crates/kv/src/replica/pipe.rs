//! Streaming a snapshot of the store through a bounded pipe: a thread
//! writes the frames of one redb read transaction into chunks, and the
//! runtime reads them as a [`Read`] on its own thread.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::error::KvError;
use crate::state_machine::KvStateMachine;

/// Bytes per chunk handed through the pipe.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight: the pipe holds at most this many (≈ 1 MiB).
const CHUNKS_IN_FLIGHT_MAX: usize = 4;

/// Starts streaming the store as it is now. Returns once the read
/// transaction is open, so entries applied after this call are not in the
/// stream even though it is read later.
pub(crate) fn stream_snapshot(sm: Arc<KvStateMachine>) -> Result<Box<dyn Read + Send>, KvError> {
    let (frozen_tx, frozen_rx) = sync_channel::<Result<(), KvError>>(1);
    let (chunks_tx, chunks_rx) = sync_channel::<io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT_MAX);
    std::thread::Builder::new()
        .name("keel-kv-snapshot".into())
        .spawn(move || {
            let source = match sm.store().begin_snapshot() {
                Ok(source) => source,
                Err(e) => {
                    let _ = frozen_tx.send(Err(e));
                    return;
                }
            };
            let _ = frozen_tx.send(Ok(()));
            let mut writer = ChunkWriter {
                chunk: Vec::with_capacity(CHUNK_BYTES),
                tx: chunks_tx,
            };
            let written = source.write(&mut writer).map(|_| ());
            if let Err(e) = written.and_then(|()| Ok(writer.flush()?)) {
                // The reader turns this into an error rather than a short
                // (and silently truncated) snapshot.
                let _ = writer.tx.send(Err(io::Error::other(e.to_string())));
            }
        })?;
    frozen_rx.recv().map_err(|_| KvError::Stopped)??;
    Ok(Box::new(ChunkReader {
        rx: chunks_rx,
        chunk: Vec::new(),
        at: 0,
    }))
}

struct ChunkWriter {
    chunk: Vec<u8>,
    tx: SyncSender<io::Result<Vec<u8>>>,
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK_BYTES - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == CHUNK_BYTES {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "snapshot reader went away"))
    }
}

struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => (self.chunk, self.at) = (chunk?, 0),
                // The writer finished (or died, which the end frame the
                // restore side requires would reveal).
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::EntryPayload;
    use crate::proto::command::command::Op;
    use crate::proto::etcdserverpb::PutRequest;

    fn put(sm: &KvStateMachine, index: u64, key: &str) {
        let command = crate::command::encode(Op::Put(PutRequest {
            key: key.to_owned().into(),
            value: vec![7u8; 100_000].into(),
            ..Default::default()
        }));
        sm.apply(&[(index, 1, EntryPayload::Command(&command))])
            .unwrap();
    }

    #[test]
    fn stream_is_a_point_in_time_even_when_read_after_later_applies() {
        let dir = tempfile::tempdir().unwrap();
        let sm = KvStateMachine::open(&dir.path().join("a"), false).unwrap();
        for i in 1..=20 {
            put(&sm, i, &format!("k{i}"));
        }
        let mut stream = stream_snapshot(sm.clone()).unwrap();
        put(&sm, 21, "later");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        assert!(bytes.len() > 20 * 100_000, "larger than a few chunks");

        let other = KvStateMachine::open(&dir.path().join("b"), false).unwrap();
        let position = other.restore_snapshot(&mut bytes.as_slice(), 20).unwrap();
        assert_eq!(position.applied_index, 20);
        assert_eq!(other.store().members().len(), 0);
        assert_eq!(
            position.revision, 21,
            "20 puts after the initial revision 1"
        );
    }
}
