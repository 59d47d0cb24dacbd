//! `keel transfer-leader`: Maintenance/MoveLeader, which only the current
//! leader accepts, so the command finds the leader first.

use anyhow::{Context, bail};
use clap::Args;
use keel_kv::proto::etcdserverpb::MoveLeaderRequest;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;

use super::endpoint::status;
use super::member::{list_members, resolve};
use super::{Cluster, ConnArgs, hex};

#[derive(Args, Debug)]
pub struct TransferLeaderArgs {
    /// The member to hand leadership to: its name or hex id.
    pub member: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub async fn run(args: TransferLeaderArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::new(&args.conn)?;
    let target = resolve(&mut cluster, &args.member).await?;
    // Any member knows the leader's id; the member list has its URL.
    let mut leader_id = 0;
    for url in cluster.endpoints().to_vec() {
        if let Ok(s) = status(&mut cluster, &url).await {
            leader_id = s.leader;
            break;
        }
    }
    if leader_id == 0 {
        bail!("no endpoint knows a leader; wait for the election and retry");
    }
    if leader_id == target.id {
        println!("{} ({}) already leads", target.name, hex(target.id));
        return Ok(());
    }
    let leader = list_members(&mut cluster)
        .await?
        .into_iter()
        .find(|m| m.id == leader_id)
        .context("the leader is not in the member list")?;
    let url = leader
        .client_ur_ls
        .first()
        .context("the leader has not published its client URL yet")?;
    let channel = cluster.channel(url).await?;
    MaintenanceClient::new(channel)
        .move_leader(MoveLeaderRequest {
            target_id: target.id,
        })
        .await
        .map_err(|s| anyhow::anyhow!("transfer-leader failed: {}", s.message()))?;
    println!(
        "Leadership transferred from {} ({}) to {} ({})",
        leader.name,
        hex(leader.id),
        target.name,
        hex(target.id)
    );
    Ok(())
}
