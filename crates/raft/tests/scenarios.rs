//! Data-driven scenario tests: every script in `testdata/` is a sequence of
//! commands against an in-memory cluster with the expected output of each.
//! `REWRITE=1 cargo test -p keel-raft --test scenarios` regenerates them.
//!
//! Commands:
//! - `add-nodes N [voters=1,2,3] [learners=4] [pre-vote=false] [check-quorum=false] [election=10] [heartbeat=1] [inflight=256] [max-bytes=N] [drift=1]`
//! - `campaign ID`, `tick ID [N]`, `tick-all N [heartbeats=true]` (ticks every node,
//!   stabilizing after each; heartbeat traffic is shown only on request)
//! - `propose ID DATA [count=N]`, `change ID add-learner|add-voter|promote|remove ID`,
//!   `change ID joint voters=1,2 [learners=3]`, `transfer ID TARGET`
//! - `read ID READ-ID [mode=lease]`, `snapshot ID [index=N]`, `send-snapshot FROM TO`, `restart ID`
//! - `set-log ID terms=1,1,2 term=T` (replace a node's durable log and restart it)
//! - `process-ready ID`, `deliver [from=ID] [to=ID]`, `stabilize`
//! - `partition 1,2 3`, `isolate ID`, `cut FROM TO` (one way), `heal`
//! - `status`, `log ID`, `applied ID`

mod harness;

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use harness::cluster::Cluster;
use harness::format;
use harness::script::{self, Command};
use keel_raft::{Config, Membership, MembershipChange, NodeId, ReadId, ReadMode};

fn ids(list: &str) -> BTreeSet<NodeId> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| NodeId(s.parse().expect("node ids are numbers")))
        .collect()
}

fn add_nodes(c: &mut Cluster, cmd: &Command) -> String {
    let n = cmd.arg_u64(0);
    let all = (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let voters = ids(cmd.option("voters").unwrap_or(&all));
    let learners = ids(cmd.option("learners").unwrap_or(""));
    let membership = Membership::new(voters.clone(), learners.clone()).unwrap();
    let flag = |key: &str, default: bool| cmd.option(key).map_or(default, |v| v == "true");
    let num = |key: &str, default: u64| cmd.option(key).map_or(default, |v| v.parse().unwrap());
    for i in 1..=n {
        let id = NodeId(i);
        let in_cluster = voters.contains(&id) || learners.contains(&id);
        let mut config = Config::new(id);
        config.pre_vote = flag("pre-vote", true);
        config.check_quorum = flag("check-quorum", true);
        config.fast_failover = flag("fast-failover", false);
        config.election_ticks = num("election", 10) as u32;
        config.heartbeat_ticks = num("heartbeat", 1) as u32;
        config.max_inflight_msgs = num("inflight", 256) as usize;
        config.max_msg_bytes = num("max-bytes", 1024 * 1024);
        config.lease_drift_ticks = num("drift", 1) as u32;
        let m = if in_cluster {
            membership.clone()
        } else {
            Membership::default()
        };
        c.add_node(config, m);
    }
    String::new()
}

fn status(c: &Cluster) -> String {
    c.nodes
        .values()
        .map(|n| format::status(&n.raft))
        .collect::<Vec<_>>()
        .join("\n")
}

fn change(c: &mut Cluster, cmd: &Command) -> String {
    let leader = cmd.arg_u64(0);
    let kind = cmd.arg(1);
    let change = if kind == "joint" {
        MembershipChange::Joint {
            voters: ids(cmd.option("voters").expect("joint needs voters=")),
            learners: ids(cmd.option("learners").unwrap_or("")),
            addresses: Default::default(),
        }
    } else if kind == "leave-joint" {
        MembershipChange::LeaveJoint
    } else {
        let target = NodeId(cmd.arg_u64(2));
        match kind {
            "add-learner" => MembershipChange::AddLearner {
                id: target,
                addr: None,
            },
            "add-voter" => MembershipChange::AddVoter {
                id: target,
                addr: None,
            },
            "promote" => MembershipChange::Promote(target),
            "remove" => MembershipChange::Remove(target),
            other => panic!("line {}: unknown change {other}", cmd.line),
        }
    };
    match c.node(leader).raft.propose_membership(change) {
        Ok(p) => format!("proposed at {}@{}", p.index, p.term),
        Err(e) => format!("error: {e}"),
    }
}

fn run(c: &mut Cluster, cmd: &Command) -> String {
    let node_arg = |i: usize| cmd.arg_u64(i);
    match cmd.name.as_str() {
        "add-nodes" => add_nodes(c, cmd),
        "campaign" => {
            c.node(node_arg(0)).raft.campaign();
            String::new()
        }
        "disconnect" => {
            // The transport of node arg 0 saw its connection from arg 1 close.
            c.node(node_arg(0))
                .raft
                .peer_disconnected(NodeId(node_arg(1)));
            String::new()
        }
        "tick" => {
            let times = cmd.args.get(1).map_or(1, |_| node_arg(1));
            let node = c.node(node_arg(0));
            for _ in 0..times {
                node.raft.tick();
            }
            String::new()
        }
        "tick-all" => {
            // Heartbeats are left out unless asked for: they would drown
            // the events a scenario is about.
            let verbose = cmd.option("heartbeats") == Some("true");
            let mut lines = Vec::new();
            for _ in 0..node_arg(0) {
                for node in c.nodes.values_mut() {
                    node.raft.tick();
                }
                lines.extend(
                    c.stabilize()
                        .into_iter()
                        .filter(|l| verbose || !l.contains(" Heartbeat")),
                );
            }
            lines.join("\n")
        }
        "propose" => {
            let count = cmd.option("count").map_or(1, |v| v.parse().unwrap());
            let mut out = Vec::new();
            for k in 0..count {
                let data = if count == 1 {
                    cmd.arg(1).to_string()
                } else {
                    format!("{}{}", cmd.arg(1), k)
                };
                let result = c.node(node_arg(0)).raft.propose(Bytes::from(data));
                if count == 1 || result.is_err() {
                    out.push(match result {
                        Ok(p) => format!("proposed at {}@{}", p.index, p.term),
                        Err(e) => format!("error: {e}"),
                    });
                }
            }
            out.join("\n")
        }
        "change" => change(c, cmd),
        "transfer" => match c
            .node(node_arg(0))
            .raft
            .transfer_leader(NodeId(node_arg(1)))
        {
            Ok(()) => String::new(),
            Err(e) => format!("error: {e}"),
        },
        "read" => {
            let mode = match cmd.option("mode") {
                Some("lease") => ReadMode::Lease,
                _ => ReadMode::ReadIndex,
            };
            c.node(node_arg(0)).raft.read(ReadId(node_arg(1)), mode);
            String::new()
        }
        "snapshot" => {
            let at = cmd.option("index").map(|i| i.parse().unwrap());
            format!("snapshot at {}", c.snapshot(node_arg(0), at))
        }
        "send-snapshot" => {
            // As if the leader had decided that the follower needs it.
            let (from, to) = (node_arg(0), node_arg(1));
            let leader = c.node(from);
            let m = keel_raft::Message {
                from: NodeId(from),
                to: NodeId(to),
                term: leader.raft.term(),
                body: keel_raft::MessageBody::InstallSnapshot {
                    meta: leader.disk.snapshot.clone(),
                },
            };
            c.network.push(m);
            String::new()
        }
        "restart" => {
            c.restart(node_arg(0));
            String::new()
        }
        "set-log" => {
            let terms: Vec<u64> = cmd
                .option("terms")
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            let term = cmd.option("term").map_or(0, |t| t.parse().unwrap());
            c.set_log(node_arg(0), &terms, term);
            String::new()
        }
        "process-ready" => c.process_ready(NodeId(node_arg(0))).join("\n"),
        "deliver" => {
            let from = cmd.option("from").map(|v| NodeId(v.parse().unwrap()));
            let to = cmd.option("to").map(|v| NodeId(v.parse().unwrap()));
            c.deliver(|m| from.is_none_or(|f| m.from == f) && to.is_none_or(|t| m.to == t))
                .join("\n")
        }
        "stabilize" => c.stabilize().join("\n"),
        "partition" => {
            let groups: Vec<BTreeSet<NodeId>> = cmd.args.iter().map(|g| ids(g)).collect();
            c.cut.clear();
            for a in &groups {
                for b in &groups {
                    if a != b {
                        for &x in a {
                            for &y in b {
                                c.cut.insert((x, y));
                            }
                        }
                    }
                }
            }
            String::new()
        }
        "isolate" => {
            let id = NodeId(node_arg(0));
            let others: Vec<NodeId> = c.nodes.keys().copied().filter(|&o| o != id).collect();
            for o in others {
                c.cut.insert((id, o));
                c.cut.insert((o, id));
            }
            String::new()
        }
        "cut" => {
            c.cut.insert((NodeId(node_arg(0)), NodeId(node_arg(1))));
            String::new()
        }
        "heal" => {
            c.cut.clear();
            String::new()
        }
        "status" => status(c),
        "log" => {
            let node = c.node(node_arg(0));
            let s = node.raft.status();
            let mut lines = Vec::new();
            let mut i = s.first_index;
            while i <= s.last_index {
                lines.push(format::entry(node.raft.entry(i).unwrap()));
                i = i.next();
            }
            if lines.is_empty() {
                lines.push("(empty)".to_string());
            }
            lines.join("\n")
        }
        "applied" => {
            let node = c.node(node_arg(0));
            let data: Vec<String> = node
                .applied
                .iter()
                .map(|d| String::from_utf8_lossy(d).to_string())
                .collect();
            format!("[{}]", data.join(" "))
        }
        other => panic!("line {}: unknown command `{other}`", cmd.line),
    }
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    for file in files {
        let mut cluster = Cluster::default();
        script::run_file(&file, |cmd| run(&mut cluster, cmd));
    }
}
