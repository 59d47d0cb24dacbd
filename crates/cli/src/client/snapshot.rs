//! `keel snapshot save`: Maintenance/Snapshot streamed into a file.
//!
//! The stream goes to `<file>.part`, fsynced and renamed when complete, so
//! an interrupted download never leaves something that looks like a good
//! snapshot.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use keel_kv::proto::etcdserverpb::SnapshotRequest;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

use super::{Cluster, ConnArgs, human_bytes};

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Save the key-value state of the first reachable endpoint to FILE.
    Save {
        /// Where to write the snapshot.
        file: PathBuf,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

fn part_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

async fn save(file: &Path, conn: &ConnArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::new(conn)?;
    let (url, channel) = cluster.any_channel().await?;
    let mut stream = MaintenanceClient::new(channel)
        .snapshot(SnapshotRequest {})
        .await
        .with_context(|| format!("{url} refused the snapshot"))?
        .into_inner();
    let part = part_path(file);
    let mut out = tokio::fs::File::create(&part)
        .await
        .with_context(|| format!("cannot create {}", part.display()))?;
    let mut written = 0usize;
    let mut complete = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("the snapshot stream from {url} failed"))?;
        out.write_all(&chunk.blob).await?;
        written += chunk.blob.len();
        complete = chunk.remaining_bytes == 0;
    }
    if !complete {
        bail!("{url} ended the snapshot early; {} kept", part.display());
    }
    out.sync_all().await?;
    drop(out);
    tokio::fs::rename(&part, file)
        .await
        .with_context(|| format!("cannot rename {} to {}", part.display(), file.display()))?;
    println!(
        "Snapshot saved at {} ({} from {url})",
        file.display(),
        human_bytes(written as i64)
    );
    Ok(())
}

pub async fn run(command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Save { file, conn } => save(&file, &conn).await,
    }
}
