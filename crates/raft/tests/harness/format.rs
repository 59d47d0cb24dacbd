//! Compact, stable text renderings of messages, entries and state for
//! scenario scripts. An entry prints as `index@term` and its payload.

use keel_raft::{AppendResult, Entry, Message, MessageBody, Payload, Raft, ReadOutcome};

pub fn entry(e: &Entry) -> String {
    let payload = match &e.payload {
        Payload::Blank => "blank".to_string(),
        Payload::Command(data) => format!("{:?}", String::from_utf8_lossy(data)),
        Payload::Membership(m) => membership(m),
    };
    format!("{}@{} {}", e.index, e.term, payload)
}

pub fn membership(m: &keel_raft::Membership) -> String {
    let ids = |s: &std::collections::BTreeSet<keel_raft::NodeId>| {
        s.iter()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = format!("voters=({})", ids(m.voters()));
    if m.is_joint() {
        out.push_str(&format!("&&({})", ids(m.outgoing())));
    }
    if !m.learners().is_empty() {
        out.push_str(&format!(" learners=({})", ids(m.learners())));
    }
    out
}

fn entries(list: &[Entry]) -> String {
    let shown: Vec<String> = list.iter().map(entry).collect();
    format!("[{}]", shown.join(", "))
}

pub fn message(m: &Message) -> String {
    let detail = match &m.body {
        MessageBody::VoteRequest {
            last_log_index,
            last_log_term,
            transfer,
            ..
        } => {
            let transfer = if *transfer { " transfer" } else { "" };
            format!("last={last_log_index}@{last_log_term}{transfer}")
        }
        MessageBody::VoteResponse { granted, .. } => {
            (if *granted { "granted" } else { "rejected" }).to_string()
        }
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries: list,
            leader_commit,
        } => format!(
            "prev={prev_log_index}@{prev_log_term} commit={leader_commit} {}",
            entries(list)
        ),
        MessageBody::Commit {
            prev_log_index,
            prev_log_term,
            leader_commit,
        } => format!("prev={prev_log_index}@{prev_log_term} commit={leader_commit}"),
        MessageBody::AppendResponse(AppendResult::Success { match_index }) => {
            format!("match={match_index}")
        }
        MessageBody::AppendResponse(AppendResult::Conflict {
            rejected,
            hint_index,
            hint_term,
        }) => {
            let term = hint_term.map_or("-".to_string(), |t| t.to_string());
            format!("reject={rejected} hint={hint_index}@{term}")
        }
        MessageBody::Heartbeat { commit, round } => format!("commit={commit} round={round}"),
        MessageBody::HeartbeatResponse { round } => format!("round={round}"),
        MessageBody::InstallSnapshot { meta } => {
            format!(
                "snapshot={}@{} {}",
                meta.index,
                meta.term,
                membership(&meta.membership)
            )
        }
        MessageBody::TimeoutNow => String::new(),
        MessageBody::ReadIndexRequest { id } => format!("read={}", id.0),
        MessageBody::ReadIndexResponse { id, index } => {
            let index = index.map_or("none".to_string(), |i| i.to_string());
            format!("read={} index={index}", id.0)
        }
    };
    format!(
        "{}->{} {} term={} {}",
        m.from,
        m.to,
        m.body.kind(),
        m.term,
        detail
    )
    .trim_end()
    .to_string()
}

pub fn read(r: &ReadOutcome) -> String {
    match &r.result {
        Ok(index) => format!("read {} ok at index {index}", r.id.0),
        Err(e) => format!("read {} failed: {e}", r.id.0),
    }
}

pub fn status(node: &Raft) -> String {
    let s = node.status();
    let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
    format!(
        "{}: {} term={} leader={} commit={} applied={} last={}",
        s.id, s.role, s.term, leader, s.commit, s.applied, s.last_index
    )
}
