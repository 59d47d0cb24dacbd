//! `keel snapshot save|status|restore`, etcdctl's snapshot commands for
//! Keel's snapshot files (etcd's envelope around Keel's content, see
//! keel-kv's `backup` module; `etcdctl snapshot status|restore` cannot
//! read them).
//!
//! `save` streams Maintenance/Snapshot to `<file>.part`, fsynced and
//! renamed when complete, so an interrupted download never leaves
//! something that looks like a good snapshot. `status` and `restore` work
//! on the file alone, offline, and verify its SHA-256 first.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use comfy_table::Table;
use keel_kv::backup::SnapshotFile;
use keel_kv::proto::etcdserverpb::SnapshotRequest;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_kv::server::{
    ConfigError, HttpUrl, INITIAL_CLUSTER_TOKEN_DEFAULT, LISTEN_PEER_URL_DEFAULT, MemberConfig,
};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

use super::{Cluster, ConnArgs, WriteOut, human_bytes};

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Save the key-value state of the first reachable endpoint to FILE.
    Save {
        /// Where to write the snapshot.
        file: PathBuf,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Verify a snapshot file's checksum and print its hash, revision,
    /// total keys and size, as `etcdctl snapshot status` does.
    Status {
        /// The snapshot file.
        file: PathBuf,
        /// `simple` (etcdctl's line) or `table`.
        #[arg(long, short = 'w', value_enum, default_value_t)]
        write_out: WriteOut,
    },
    /// Write a new member's data directory holding a snapshot's data, for
    /// a new cluster (etcdctl's flags): restore the same file once per
    /// member, then start every member on its directory.
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The snapshot file.
    file: PathBuf,
    /// The member's name in --initial-cluster.
    #[arg(long, default_value = "default")]
    name: String,
    /// The directory to create [default: <name>.keel]; it must not exist.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Every founding member of the new cluster, as name=peer-URL pairs
    /// [default: NAME=--initial-advertise-peer-urls].
    #[arg(long, value_name = "MEMBERS")]
    initial_cluster: Option<String>,
    /// The new cluster's token (its ID is derived from it; members added
    /// later must be started with it): give the restored cluster a token
    /// of its own. The default is a member's.
    #[arg(long, default_value = INITIAL_CLUSTER_TOKEN_DEFAULT)]
    initial_cluster_token: String,
    /// This member's peer URLs; must match its --initial-cluster entry.
    #[arg(long, default_value = LISTEN_PEER_URL_DEFAULT, value_name = "URLS")]
    initial_advertise_peer_urls: String,
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

fn status(file: &Path, write_out: WriteOut) -> anyhow::Result<()> {
    let status = SnapshotFile::open(file)?.status()?;
    let row = [
        format!("{:x}", status.hash),
        status.revision.to_string(),
        status.total_keys.to_string(),
        human_bytes(i64::try_from(status.total_size).unwrap_or(i64::MAX)),
    ];
    match write_out {
        WriteOut::Simple => println!("{}", row.join(", ")),
        WriteOut::Table => {
            let mut table = Table::new();
            table.set_header(["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"]);
            table.add_row(row);
            println!("{table}");
        }
    }
    Ok(())
}

fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("{}.keel", args.name)));
    let advertised =
        HttpUrl::parse_list(&args.initial_advertise_peer_urls).map_err(|(value, why)| {
            ConfigError::BadUrl {
                flag: "initial-advertise-peer-urls",
                value,
                why,
            }
        })?;
    let initial_cluster = match &args.initial_cluster {
        Some(text) => MemberConfig::parse_initial_cluster(text)?,
        None => advertised
            .iter()
            .map(|url| (args.name.clone(), url.clone()))
            .collect(),
    };
    let config = MemberConfig {
        initial_cluster,
        initial_cluster_token: args.initial_cluster_token,
        initial_advertise_peer_urls: advertised,
        ..MemberConfig::new(args.name, data_dir.clone())
    };
    let restored = keel_kv::server::restore(&args.file, &config)?;
    println!(
        "Restored {} into {} at revision {}: member {:x} of a new cluster {:x} with {} members",
        args.file.display(),
        data_dir.display(),
        restored.position.revision,
        restored.identity.member_id,
        restored.identity.cluster_id,
        restored.members,
    );
    Ok(())
}

pub async fn run(command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Save { file, conn } => save(&file, &conn).await,
        SnapshotCommand::Status { file, write_out } => status(&file, write_out),
        SnapshotCommand::Restore(args) => restore(args),
    }
}
