//! Moving snapshot bytes: from the state machine into the snapshot store,
//! from the store to a follower, and from the store into a reader.

use std::io::{self, Read};
use std::sync::Arc;

use keel_raft::{Message, MessageBody, SnapshotMeta};
use keel_storage::{SnapshotInfo, SnapshotReader, SnapshotStore};
use keel_transport::Transport;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::error::SnapshotWriteError;
use crate::event::Event;

/// Bytes copied per write when storing a snapshot the state machine made.
const WRITE_CHUNK_BYTES: usize = 1024 * 1024;

/// A published snapshot's data as a [`Read`], from `offset` on.
pub(crate) struct SnapshotBytes {
    reader: SnapshotReader,
    offset: u64,
}

impl SnapshotBytes {
    pub(crate) fn new(reader: SnapshotReader, offset: u64) -> SnapshotBytes {
        SnapshotBytes { reader, offset }
    }
}

impl Read for SnapshotBytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self
            .reader
            .read_chunk(self.offset, buf.len())
            .map_err(io::Error::other)?;
        buf[..chunk.len()].copy_from_slice(&chunk);
        self.offset += chunk.len() as u64;
        Ok(chunk.len())
    }
}

/// Copies the state machine's snapshot stream into the store and publishes it.
pub(crate) fn write_local(
    store: &SnapshotStore,
    meta: SnapshotMeta,
    data: &mut dyn Read,
) -> Result<SnapshotInfo, SnapshotWriteError> {
    let mut writer = store.begin(meta)?;
    let mut buf = vec![0u8; WRITE_CHUNK_BYTES];
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            return Ok(writer.finish(None)?);
        }
        writer.write_chunk(writer.next_offset(), &buf[..n])?;
    }
}

/// Streams the stored snapshot that `message` (an InstallSnapshot) names to
/// its recipient, then tells the driver how it went.
pub(crate) async fn send(
    transport: Transport,
    store: Arc<SnapshotStore>,
    message: Message,
    events: mpsc::UnboundedSender<Event>,
) {
    let to = message.to;
    let MessageBody::InstallSnapshot { meta } = &message.body else {
        unreachable!("the driver only hands InstallSnapshot messages here")
    };
    let index = meta.index;
    let opened = tokio::task::spawn_blocking(move || store.open_reader(index)).await;
    let ok = match opened {
        Ok(Ok(reader)) => {
            let checksum = reader.info().checksum;
            let open = move |offset| {
                Ok(Box::new(SnapshotBytes::new(reader, offset)) as Box<dyn Read + Send>)
            };
            match transport.send_snapshot(message, checksum, open).await {
                Ok(()) => {
                    debug!(%to, %index, "snapshot sent");
                    true
                }
                Err(e) => {
                    warn!(%to, %index, error = %e, "sending a snapshot failed; the leader will retry");
                    false
                }
            }
        }
        Ok(Err(e)) => {
            warn!(%to, %index, error = %e, "cannot open the snapshot to send");
            false
        }
        Err(e) => {
            warn!(%to, %index, error = %e, "opening the snapshot to send panicked");
            false
        }
    };
    let _ = events.send(Event::SnapshotSent { to, ok });
}
