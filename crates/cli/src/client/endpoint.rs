//! `keel endpoint status|health`: each endpoint on its own, no failover,
//! since the point is to see every member's answer.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Subcommand;
use comfy_table::Table;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_kv::proto::etcdserverpb::{RangeRequest, StatusRequest, StatusResponse};

use super::member::list_members;
use super::{Cluster, ConnArgs, WriteOut, hex, human_bytes};

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Each endpoint's member id, version, db size, leader, Raft term and
    /// indexes.
    Status {
        /// Ask every member in the member list, not only --endpoints.
        #[arg(long)]
        cluster: bool,
        /// `simple` (etcdctl's lines) or `table`.
        #[arg(long, short = 'w', value_enum, default_value_t)]
        write_out: WriteOut,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Whether each endpoint serves a linearizable read (which needs a
    /// leader and a quorum); fails if any does not.
    Health {
        /// Ask every member in the member list, not only --endpoints.
        #[arg(long)]
        cluster: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

/// Maintenance/Status on one endpoint.
pub async fn status(cluster: &mut Cluster, url: &str) -> anyhow::Result<StatusResponse> {
    let channel = cluster.channel(url).await?;
    let response = MaintenanceClient::new(channel)
        .status(StatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{url}: {}", s.message()))?;
    Ok(response.into_inner())
}

/// The endpoints to ask: the given ones, or every member's client URLs.
async fn targets(cluster: &mut Cluster, whole_cluster: bool) -> anyhow::Result<Vec<String>> {
    if !whole_cluster {
        return Ok(cluster.endpoints().to_vec());
    }
    let mut urls: Vec<String> = list_members(cluster)
        .await?
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect();
    urls.dedup();
    Ok(urls)
}

fn host(url: &str) -> &str {
    url.trim_start_matches("http://")
}

async fn print_status(cluster: &mut Cluster, urls: &[String], write_out: WriteOut) -> bool {
    let mut table = Table::new();
    table.set_header([
        "ENDPOINT",
        "ID",
        "VERSION",
        "DB SIZE",
        "IS LEADER",
        "IS LEARNER",
        "RAFT TERM",
        "RAFT INDEX",
        "RAFT APPLIED INDEX",
        "ERRORS",
    ]);
    let mut all_ok = true;
    for url in urls {
        match status(cluster, url).await {
            Ok(s) => {
                let id = s.header.map_or(0, |h| h.member_id);
                let row = [
                    host(url).to_string(),
                    hex(id),
                    s.version.clone(),
                    human_bytes(s.db_size),
                    (s.leader == id && id != 0).to_string(),
                    s.is_learner.to_string(),
                    s.raft_term.to_string(),
                    s.raft_index.to_string(),
                    s.raft_applied_index.to_string(),
                    s.errors.join(", "),
                ];
                match write_out {
                    WriteOut::Simple => println!("{}", row.join(", ")),
                    WriteOut::Table => {
                        table.add_row(row);
                    }
                }
            }
            Err(e) => {
                all_ok = false;
                eprintln!("{}: {e:#}", host(url));
            }
        }
    }
    if write_out == WriteOut::Table {
        println!("{table}");
    }
    all_ok
}

/// etcd's health check: a linearizable read of the key `health`, which
/// succeeds only with a leader and a quorum behind it.
async fn check_health(cluster: &mut Cluster, url: &str) -> anyhow::Result<Duration> {
    let channel = cluster.channel(url).await?;
    let started = Instant::now();
    KvClient::new(channel)
        .range(RangeRequest {
            key: "health".into(),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    Ok(started.elapsed())
}

pub async fn run(command: EndpointCommand) -> anyhow::Result<()> {
    match command {
        EndpointCommand::Status {
            cluster: whole,
            write_out,
            conn,
        } => {
            let mut cluster = Cluster::new(&conn)?;
            let urls = targets(&mut cluster, whole).await?;
            if !print_status(&mut cluster, &urls, write_out).await {
                bail!("some endpoints did not answer");
            }
        }
        EndpointCommand::Health {
            cluster: whole,
            conn,
        } => {
            let mut cluster = Cluster::new(&conn)?;
            let urls = targets(&mut cluster, whole).await?;
            let mut unhealthy = 0;
            for url in &urls {
                match check_health(&mut cluster, url).await {
                    Ok(took) => println!(
                        "{} is healthy: successfully committed proposal: took = {took:?}",
                        host(url)
                    ),
                    Err(e) => {
                        unhealthy += 1;
                        println!(
                            "{} is unhealthy: failed to commit proposal: {e:#}",
                            host(url)
                        );
                    }
                }
            }
            if unhealthy > 0 {
                bail!("{unhealthy} of {} endpoints are unhealthy", urls.len());
            }
        }
    }
    Ok(())
}
