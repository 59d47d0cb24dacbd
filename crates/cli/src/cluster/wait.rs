//! Waiting, in bounded time, until a freshly started cluster has a leader
//! that every member agrees on, while watching for members that die on
//! start (a port taken meanwhile, a bad data directory…).

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use keel::tls::ClientTls;
use tokio::time::Instant;

use super::probe::{member_names, probe};
use super::state::ClusterFile;

/// Between two rounds of questions.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long one member gets to answer one question.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Lines of a dead member's log shown with the error.
const LOG_TAIL_LINES: usize = 15;

/// The elected leader.
pub struct Ready {
    pub leader_name: String,
    pub term: u64,
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Asks every member until all name the same leader, one of them, and
/// the leader's member list names every member (members publish their
/// names shortly after they start; commands that take a member name need
/// them).
async fn leader_agreed(file: &ClusterFile, tls: Option<&ClientTls>) -> (usize, Option<Ready>) {
    let mut answering = 0;
    let mut leaders = Vec::new();
    let mut ids = Vec::new();
    for member in &file.members {
        if let Ok(view) = probe(member, tls, PROBE_TIMEOUT).await {
            answering += 1;
            leaders.push((view.leader, view.term));
            ids.push((view.id, member.name.clone()));
        }
    }
    if answering < file.members.len() {
        return (answering, None);
    }
    let (leader, _) = leaders[0];
    if leader == 0 || leaders.iter().any(|&(l, _)| l != leader) {
        return (answering, None);
    }
    let term = leaders.iter().map(|&(_, t)| t).max().unwrap_or(0);
    let Some((_, leader_name)) = ids.into_iter().find(|(id, _)| *id == leader) else {
        return (answering, None);
    };
    let leader_url = file
        .members
        .iter()
        .find(|m| m.name == leader_name)
        .map(|m| m.client_url.as_str())
        .unwrap_or_default();
    let published = member_names(leader_url, tls, PROBE_TIMEOUT)
        .await
        .is_ok_and(|names| file.members.iter().all(|m| names.contains(&m.name)));
    (answering, published.then_some(Ready { leader_name, term }))
}

/// Waits for a leader for at most `timeout`; fails early, with its log,
/// if one of `children` exits.
pub async fn wait_for_leader(
    file: &ClusterFile,
    cluster_dir: &Path,
    children: &mut [(String, Child)],
    timeout: Duration,
) -> anyhow::Result<Ready> {
    let tls = file.client_tls(cluster_dir)?;
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})")?);
    spinner.enable_steady_tick(Duration::from_millis(100));
    let deadline = Instant::now() + timeout;
    let result = loop {
        for (name, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                let log = file
                    .members
                    .iter()
                    .find(|m| &m.name == name)
                    .map(|m| m.log_file(cluster_dir))
                    .unwrap_or_default();
                spinner.finish_and_clear();
                bail!(
                    "member {name} exited during start-up ({status}); the end of {}:\n{}",
                    log.display(),
                    log_tail(&log)
                );
            }
        }
        let (answering, ready) = leader_agreed(file, tls.as_ref()).await;
        if let Some(ready) = ready {
            break Ok(ready);
        }
        if Instant::now() >= deadline {
            break Err(anyhow::anyhow!(
                "no leader after {timeout:?} ({answering} of {} members answering); \
                 see the members' keel.log files under {}, or wait longer with --wait-timeout",
                file.members.len(),
                cluster_dir.display()
            ));
        }
        spinner.set_message(format!(
            "waiting for a leader: {answering} of {} members answering",
            file.members.len()
        ));
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    spinner.finish_and_clear();
    result
}
