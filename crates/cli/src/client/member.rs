//! `keel member list|add|remove|promote`: the Cluster service.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use comfy_table::Table;
use keel_kv::proto::etcdserverpb::cluster_client::ClusterClient;
use keel_kv::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
};

use super::{Cluster, Conn, ConnArgs, WriteOut, hex};

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// List the members: id, status, name, peer URLs, client URLs, learner.
    List {
        /// `simple` (etcdctl's lines) or `table`.
        #[arg(long, short = 'w', value_enum, default_value_t)]
        write_out: WriteOut,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Add a member, then print how to start it.
    Add(AddArgs),
    /// Remove a member (by hex id or name).
    Remove {
        /// The member's hex id or its name.
        member: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Make a learner a voting member (by hex id or name).
    Promote {
        /// The learner's hex id or its name.
        member: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The new member's name, for the start command printed afterwards.
    pub name: String,
    /// Comma-separated peer URLs the new member will listen on.
    #[arg(long, required = true, value_delimiter = ',', value_name = "URLS")]
    pub peer_urls: Vec<String>,
    /// Add it as a learner, which receives the log but does not vote,
    /// until `keel member promote`.
    #[arg(long)]
    pub learner: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub async fn list_members(cluster: &mut Cluster) -> anyhow::Result<Vec<Member>> {
    let response = cluster
        .call("member list", |channel| async move {
            ClusterClient::new(channel)
                .member_list(MemberListRequest {
                    linearizable: false,
                })
                .await
        })
        .await?;
    Ok(response.into_inner().members)
}

/// A member named by hex id or by name.
pub async fn resolve(cluster: &mut Cluster, member: &str) -> anyhow::Result<Member> {
    let members = list_members(cluster).await?;
    let id = u64::from_str_radix(member.trim_start_matches("0x"), 16).ok();
    let found = members
        .iter()
        .find(|m| m.name == member)
        .or_else(|| members.iter().find(|m| Some(m.id) == id));
    match found {
        Some(m) => Ok(m.clone()),
        None => bail!(
            "no member is named or has the id `{member}`; members: {} \
             (a member has no name until it has started; use its hex id)",
            members
                .iter()
                .map(|m| match m.name.as_str() {
                    "" => format!("unstarted ({})", hex(m.id)),
                    name => format!("{name} ({})", hex(m.id)),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn print_members(members: &[Member], write_out: WriteOut) {
    let rows = members.iter().map(|m| {
        [
            hex(m.id),
            if m.name.is_empty() {
                "unstarted"
            } else {
                "started"
            }
            .to_string(),
            m.name.clone(),
            m.peer_ur_ls.join(","),
            m.client_ur_ls.join(","),
            m.is_learner.to_string(),
        ]
    });
    match write_out {
        WriteOut::Simple => rows.for_each(|row| println!("{}", row.join(", "))),
        WriteOut::Table => {
            let mut table = Table::new();
            table.set_header([
                "ID",
                "STATUS",
                "NAME",
                "PEER ADDRS",
                "CLIENT ADDRS",
                "IS LEARNER",
            ]);
            rows.for_each(|row| {
                table.add_row(row);
            });
            println!("{table}");
        }
    }
}

async fn add(args: AddArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::new(&args.conn)?;
    let request = MemberAddRequest {
        peer_ur_ls: args.peer_urls.clone(),
        is_learner: args.learner,
    };
    let response = cluster
        .call("member add", |channel: Conn| {
            let request = request.clone();
            async move { ClusterClient::new(channel).member_add(request).await }
        })
        .await?
        .into_inner();
    let added = response
        .member
        .context("the server did not return the new member")?;
    let cluster_id = response.header.map_or(0, |h| h.cluster_id);
    println!(
        "Member {} added to cluster {}",
        hex(added.id),
        hex(cluster_id)
    );
    let initial_cluster = response
        .members
        .iter()
        .flat_map(|m| {
            let name = if m.id == added.id {
                &args.name
            } else {
                &m.name
            };
            m.peer_ur_ls.iter().map(move |url| format!("{name}={url}"))
        })
        .collect::<Vec<_>>()
        .join(",");
    println!();
    println!("Start it with:");
    println!(
        "keel serve --name {} --initial-advertise-peer-urls {} --listen-peer-urls {} \
         --initial-cluster {initial_cluster} --initial-cluster-state existing \
         --listen-client-urls <URL> --data-dir <DIR>",
        args.name,
        args.peer_urls.join(","),
        args.peer_urls.join(","),
    );
    Ok(())
}

pub async fn run(command: MemberCommand) -> anyhow::Result<()> {
    match command {
        MemberCommand::List { write_out, conn } => {
            let mut cluster = Cluster::new(&conn)?;
            print_members(&list_members(&mut cluster).await?, write_out);
        }
        MemberCommand::Add(args) => add(args).await?,
        MemberCommand::Remove { member, conn } => {
            let mut cluster = Cluster::new(&conn)?;
            let member = resolve(&mut cluster, &member).await?;
            let response = cluster
                .call("member remove", |channel| async move {
                    ClusterClient::new(channel)
                        .member_remove(MemberRemoveRequest { id: member.id })
                        .await
                })
                .await?
                .into_inner();
            let cluster_id = response.header.map_or(0, |h| h.cluster_id);
            println!(
                "Member {} removed from cluster {}",
                hex(member.id),
                hex(cluster_id)
            );
        }
        MemberCommand::Promote { member, conn } => {
            let mut cluster = Cluster::new(&conn)?;
            let member = resolve(&mut cluster, &member).await?;
            let response = cluster
                .call("member promote", |channel| async move {
                    ClusterClient::new(channel)
                        .member_promote(MemberPromoteRequest { id: member.id })
                        .await
                })
                .await?
                .into_inner();
            let cluster_id = response.header.map_or(0, |h| h.cluster_id);
            println!(
                "Member {} promoted in cluster {}",
                hex(member.id),
                hex(cluster_id)
            );
        }
    }
    Ok(())
}
