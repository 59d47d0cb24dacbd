//! `keel cluster status`: one table row per member of the local cluster,
//! with the problems an operator should look at spelled out in a last
//! column rather than left to be inferred from the numbers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use comfy_table::Table;

use super::ClusterDir;
use super::probe::{MemberView, probe};
use super::process::running_member;
use super::state::{ClusterFile, MemberEntry};
use crate::client::{hex, human_bytes};
use crate::duration;

/// A member this many entries behind the highest commit index seen is
/// reported as lagging.
pub const LAG_WARN_ENTRIES: u64 = 100;

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dir: ClusterDir,
    /// How long to wait for each member's answer (e.g. 500ms, 2s).
    #[arg(long, default_value = "1s", value_parser = duration::parse, value_name = "DURATION")]
    pub timeout: Duration,
}

/// What `status` learned about one member.
pub struct Observed<'a> {
    pub member: &'a MemberEntry,
    /// The member's process, if it runs.
    pub pid: Option<u32>,
    pub view: Result<MemberView, String>,
}

fn warning(o: &Observed, leaders: &BTreeMap<u64, usize>, max_commit: u64) -> String {
    let view = match (&o.view, o.pid.is_some()) {
        (Err(_), false) => return "DOWN: process not running".into(),
        (Err(why), true) => return format!("NOT ANSWERING: {why}"),
        (Ok(view), _) => view,
    };
    let mut warnings = Vec::new();
    if view.leader == 0 {
        warnings.push("no leader".to_string());
    } else if leaders.len() > 1 {
        warnings.push("members disagree on the leader".to_string());
    }
    let lag = max_commit.saturating_sub(view.applied_index);
    if lag >= LAG_WARN_ENTRIES {
        warnings.push(format!("LAGGING: {lag} entries behind"));
    }
    warnings.join("; ")
}

/// The table, and a one-line summary under it.
pub fn render(observed: &[Observed]) -> (Table, String) {
    let views: Vec<&MemberView> = observed
        .iter()
        .filter_map(|o| o.view.as_ref().ok())
        .collect();
    let names: BTreeMap<u64, &str> = observed
        .iter()
        .filter_map(|o| Some((o.view.as_ref().ok()?.id, o.member.name.as_str())))
        .collect();
    let name_of = |id: u64| names.get(&id).map_or_else(|| hex(id), |n| n.to_string());
    let mut leaders: BTreeMap<u64, usize> = BTreeMap::new();
    for view in views.iter().filter(|v| v.leader != 0) {
        *leaders.entry(view.leader).or_default() += 1;
    }
    let max_commit = views.iter().map(|v| v.commit_index).max().unwrap_or(0);

    let mut table = Table::new();
    table.set_header([
        "NAME", "ID", "PROCESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "RAFT LOG",
        "DB SIZE", "WARNING",
    ]);
    for o in observed {
        let process = o
            .pid
            .map_or_else(|| "stopped".to_string(), |pid| format!("running ({pid})"));
        let mut row = vec![o.member.name.clone()];
        match &o.view {
            Ok(v) => {
                let role = v.role.clone().unwrap_or_else(|| {
                    if v.leader == v.id {
                        "leader"
                    } else if v.is_learner {
                        "learner"
                    } else {
                        "follower"
                    }
                    .to_string()
                });
                row.extend([
                    hex(v.id),
                    process,
                    role,
                    v.term.to_string(),
                    if v.leader == 0 {
                        "-".into()
                    } else {
                        name_of(v.leader)
                    },
                    v.commit_index.to_string(),
                    v.applied_index.to_string(),
                    v.log_entries.map_or("-".into(), |n| format!("{n} entries")),
                    human_bytes(v.db_size_bytes),
                ]);
            }
            Err(_) => {
                row.extend(["-".into(), process]);
                row.extend(std::iter::repeat_n("-".to_string(), 7));
            }
        }
        row.push(warning(o, &leaders, max_commit));
        table.add_row(row);
    }
    let up = views.len();
    let summary = match leaders.len() {
        0 => format!("NO LEADER; {up} of {} members answering", observed.len()),
        1 => {
            let (&leader, _) = leaders.iter().next().expect("one leader");
            let term = views.iter().map(|v| v.term).max().unwrap_or(0);
            format!(
                "leader: {} (term {term}); {up} of {} members answering",
                name_of(leader),
                observed.len()
            )
        }
        _ => format!(
            "members disagree on the leader ({}); {up} of {} members answering",
            leaders
                .keys()
                .map(|&id| name_of(id))
                .collect::<Vec<_>>()
                .join(", "),
            observed.len()
        ),
    };
    (table, summary)
}

/// Every member's answers, asked in parallel.
pub async fn observe<'a>(
    file: &'a ClusterFile,
    cluster_dir: &Path,
    timeout: Duration,
) -> anyhow::Result<Vec<Observed<'a>>> {
    let tls = file.client_tls(cluster_dir)?;
    let probes: Vec<_> = file
        .members
        .iter()
        .cloned()
        .map(|member| {
            let tls = tls.clone();
            tokio::spawn(async move { probe(&member, tls.as_ref(), timeout).await })
        })
        .collect();
    let mut observed = Vec::with_capacity(probes.len());
    for (member, probe) in file.members.iter().zip(probes) {
        observed.push(Observed {
            member,
            pid: running_member(member.pid, &member.data_dir(cluster_dir)),
            view: probe.await.unwrap_or_else(|e| Err(e.to_string())),
        });
    }
    Ok(observed)
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let cluster_dir = args.dir.resolve()?;
    let file = ClusterFile::require(&cluster_dir)?;
    let observed = observe(&file, &cluster_dir, args.timeout).await?;
    let (table, summary) = render(&observed);
    println!("{table}");
    println!("{summary}");
    Ok(())
}
