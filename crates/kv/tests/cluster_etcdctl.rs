//! A real three-member Keel KV cluster (three `keel-kv` processes on
//! loopback) driven by the stock `etcdctl` (v3.4): every command of the
//! issue's list, against different members.
//!
//! Skips (passing, with a message) when `etcdctl` is not installed and
//! cannot be installed.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::Cluster;
use support::etcdctl::{etcdctl, etcdctl_available, etcdctl_until, etcdctl_with_input};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Bounds the wait for a watch's next line.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `etcdctl watch`, read line by line.
struct Watch {
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    _child: tokio::process::Child,
}

impl Watch {
    async fn start(endpoint: &str, args: &[&str]) -> Watch {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg("watch")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Watch {
            lines,
            _child: child,
        }
    }

    /// The next `n` lines printed, within the call timeout.
    async fn next_lines(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let line = tokio::time::timeout(CALL_TIMEOUT, self.lines.next_line())
                .await
                .expect("the watch printed nothing in time")
                .unwrap()
                .expect("the watch ended");
            out.push(line);
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_kv_watch_lease_and_compaction_on_three_members() {
    if !etcdctl_available() {
        eprintln!("SKIPPED: etcdctl is not installed and `apt-get install etcd-client` failed");
        return;
    }
    let cluster = Cluster::start(3, &[]).await;
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let [l, f, o] = [leader, follower, other].map(|i| cluster.members[i].endpoint());

    // Writes on a follower are forwarded; reads anywhere see them.
    assert_eq!(etcdctl(&f, &["put", "a", "1"]).await.trim(), "OK");
    assert_eq!(etcdctl(&o, &["put", "ab", "2"]).await.trim(), "OK");
    assert_eq!(etcdctl(&l, &["put", "b", "3"]).await.trim(), "OK");
    assert_eq!(etcdctl(&o, &["get", "a"]).await, "a\n1\n");
    assert_eq!(
        etcdctl(&f, &["get", "a", "--prefix"]).await,
        "a\n1\nab\n2\n"
    );
    assert_eq!(
        etcdctl(&l, &["get", "a", "--prefix", "--keys-only"]).await,
        "a\n\nab\n\n"
    );
    assert_eq!(
        etcdctl(&o, &["get", "", "--from-key", "--limit=2"]).await,
        "a\n1\nab\n2\n"
    );
    // The first write made revision 2: `a` did not exist at revision 1.
    assert_eq!(etcdctl(&f, &["get", "a", "--rev=1"]).await, "");
    assert_eq!(etcdctl(&f, &["get", "a", "--rev=2"]).await, "a\n1\n");
    // A serializable read is local; the follower applied `b` before the
    // leader answered the put (it waits for its own apply).
    assert_eq!(
        etcdctl(&l, &["get", "b", "--consistency=s"]).await,
        "b\n3\n"
    );

    // An interactive txn: compares, then success ops, then failure ops.
    let txn = "value(\"a\") = \"1\"\n\nput t yes\nget a\n\nput t no\n\n";
    assert_eq!(
        etcdctl_with_input(&o, &["txn"], txn).await,
        "SUCCESS\n\nOK\n\na\n1\n"
    );
    assert_eq!(etcdctl(&f, &["get", "t"]).await, "t\nyes\n");
    let failing = "value(\"a\") = \"9\"\n\nput t yes\n\nput t no\n\n";
    assert_eq!(
        etcdctl_with_input(&l, &["txn"], failing).await,
        "FAILURE\n\nOK\n"
    );

    // Watch on one member, write on another: the watcher sees it.
    let mut live = Watch::start(&o, &["w"]).await;
    // The watch is registered once the stream is open; a put that raced
    // ahead of it would be missed, so resume from the current revision.
    let rev_out = etcdctl(&f, &["put", "w", "first", "-w", "json"]).await;
    let rev = json_revision(&rev_out);
    drop(live);
    live = Watch::start(&o, &["w", &format!("--rev={}", rev + 1)]).await;
    assert_eq!(etcdctl(&f, &["put", "w", "second"]).await.trim(), "OK");
    assert_eq!(live.next_lines(3).await, ["PUT", "w", "second"]);
    // Resuming from a revision replays history first.
    let mut resumed = Watch::start(&l, &["w", &format!("--rev={rev}")]).await;
    assert_eq!(
        resumed.next_lines(6).await,
        ["PUT", "w", "first", "PUT", "w", "second"]
    );

    assert_eq!(etcdctl(&o, &["del", "ab"]).await, "1\n");
    assert_eq!(etcdctl(&o, &["get", "ab"]).await, "");

    // Compaction: older revisions are gone, everywhere.
    let compact = etcdctl(&f, &["compact", &rev.to_string()]).await;
    assert_eq!(compact.trim(), format!("compacted revision {rev}"));
    for endpoint in [&l, &f, &o] {
        let old = etcdctl(endpoint, &["get", "a", "--rev=2"]).await;
        assert!(
            old.contains("required revision has been compacted"),
            "{endpoint}: {old}"
        );
    }

    // Leases: grant on one member, attach, renew and inspect on others,
    // revoke: the attached key vanishes on every member.
    let granted = etcdctl(&f, &["lease", "grant", "60"]).await;
    let lease = granted.split_whitespace().nth(1).unwrap().to_owned();
    assert!(granted.ends_with("granted with TTL(60s)\n"), "{granted}");
    assert_eq!(
        etcdctl(&o, &["put", "leased", "v", &format!("--lease={lease}")])
            .await
            .trim(),
        "OK"
    );
    let alive = etcdctl(&o, &["lease", "keep-alive", "--once", &lease]).await;
    assert_eq!(
        alive.trim(),
        format!("lease {lease} keepalived with TTL(60)")
    );
    let ttl = etcdctl(&f, &["lease", "timetolive", &lease, "--keys"]).await;
    assert!(
        ttl.starts_with(&format!("lease {lease} granted with TTL(60s), remaining(")),
        "{ttl}"
    );
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    assert_eq!(
        etcdctl(&l, &["lease", "revoke", &lease]).await.trim(),
        format!("lease {lease} revoked")
    );
    for endpoint in [&l, &f, &o] {
        assert_eq!(etcdctl(endpoint, &["get", "leased"]).await, "");
    }
    let gone = etcdctl(&o, &["lease", "timetolive", &lease]).await;
    assert_eq!(gone.trim(), format!("lease {lease} already expired"));
}

/// The revision in `etcdctl -w json` output.
fn json_revision(json: &str) -> i64 {
    let at = json
        .find("\"revision\":")
        .expect("a revision in the header")
        + 11;
    json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_maintenance_and_membership_on_three_members() {
    if !etcdctl_available() {
        eprintln!("SKIPPED: etcdctl is not installed and `apt-get install etcd-client` failed");
        return;
    }
    let mut cluster = Cluster::start(3, &[]).await;
    let all = cluster.endpoints();
    let leader = cluster.wait_leader().await;
    for i in 0..20 {
        let key = format!("k{i}");
        etcdctl(&cluster.members[i % 3].endpoint(), &["put", &key, "v"]).await;
    }

    // Status: one leader, the same term and applied index everywhere.
    let status = etcdctl_until(&all, &["endpoint", "status"], |out| {
        let lines: Vec<&str> = out.lines().collect();
        let applied: Vec<&str> = lines
            .iter()
            .map(|l| l.split(", ").nth(8).unwrap_or(""))
            .collect();
        lines.len() == 3 && applied.iter().all(|a| *a == applied[0])
    })
    .await;
    assert_eq!(status.matches(", true, false, ").count(), 1, "{status}");
    let health = etcdctl(&all, &["endpoint", "health"]).await;
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    let hashes = etcdctl(&all, &["endpoint", "hashkv"]).await;
    let hashes: Vec<&str> = hashes
        .lines()
        .map(|l| l.split(", ").nth(1).unwrap())
        .collect();
    assert_eq!(hashes.len(), 3);
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");

    // With `--cluster` the endpoints are the members' client URLs, and
    // etcdctl's per-endpoint calls then carry a whole URL as HTTP/2's
    // `:authority`: every member still answers them.
    let url = cluster.members[(leader + 1) % 3].client_url();
    for (args, answered) in [
        (
            &["endpoint", "status", "--cluster"][..],
            "http://127.0.0.1:",
        ),
        (
            &["endpoint", "hashkv", "--cluster"][..],
            "http://127.0.0.1:",
        ),
        (
            &["defrag", "--cluster"][..],
            "Finished defragmenting etcd member[http://127.0.0.1:",
        ),
    ] {
        let out = etcdctl(&url, args).await;
        assert_eq!(out.matches(answered).count(), 3, "{args:?}: {out}");
        assert!(!out.contains("Error"), "{args:?}: {out}");
    }

    // Snapshot save, in etcd's download layout (blocks + sha256).
    let file = cluster.root().join("snap.db");
    let saved = etcdctl(
        &cluster.members[(leader + 1) % 3].endpoint(),
        &["snapshot", "save", file.to_str().unwrap()],
    )
    .await;
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    assert_eq!(std::fs::metadata(&file).unwrap().len() % 512, 32);

    // Move the leadership to a follower.
    let list = etcdctl(&all, &["member", "list"]).await;
    assert_eq!(list.matches(", started, ").count(), 3, "{list}");
    let target = member_id(&list, &cluster.members[(leader + 1) % 3].name);
    let urls: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();
    let moved = etcdctl(&urls.join(","), &["move-leader", &target]).await;
    assert!(moved.contains(&format!("to {target}")), "{moved}");
    assert_eq!(cluster.wait_leader().await, (leader + 1) % 3);

    // Add a learner, start it, promote it once it caught up.
    let new = cluster.reserve_member();
    let peer_url = cluster.members[new].peer_url();
    let added = etcdctl(
        &all,
        &[
            "member",
            "add",
            &cluster.members[new].name,
            &format!("--peer-urls={peer_url}"),
            "--learner",
        ],
    )
    .await;
    assert!(
        added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{added}"
    );
    cluster.spawn(new, "existing");
    let new_endpoint = cluster.members[new].endpoint();
    etcdctl_until(&new_endpoint, &["get", "k19", "--consistency=s"], |out| {
        out == "k19\nv\n"
    })
    .await;
    // The new member publishes its name once it has joined; wait for it.
    let started = format!(", started, {}, ", cluster.members[new].name);
    let list = etcdctl_until(&all, &["member", "list"], |out| out.contains(&started)).await;
    let new_id = member_id(&list, &cluster.members[new].name);
    assert!(
        list.contains(&format!("{new_id}, started, m3, {peer_url}, ")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with(&new_id) && l.ends_with(", true")),
        "{list}"
    );
    etcdctl_until(&all, &["member", "promote", &new_id], |out| {
        out.contains("promoted")
    })
    .await;
    // Committed is not yet applied everywhere: the member etcdctl picks
    // answers from its own configuration, as etcd 3.4's does.
    let list = etcdctl_until(&all, &["member", "list"], |out| {
        out.matches(", false").count() == 4
    })
    .await;
    assert_eq!(list.matches(", false").count(), 4, "{list}");
    // The new voter serves linearizable reads and takes writes.
    assert_eq!(
        etcdctl(&new_endpoint, &["put", "from-new", "1"])
            .await
            .trim(),
        "OK"
    );
    assert_eq!(etcdctl(&all, &["get", "from-new"]).await, "from-new\n1\n");

    // Move it to another peer port, as etcd's docs do: update its peer
    // URLs, then restart it there. The new address reaches every member
    // through the Raft configuration; a linearizable read on the moved
    // member needs the leader to answer it at the new address.
    cluster.stop(new).await;
    cluster.members[new].peer_port = support::free_port();
    let moved_url = cluster.members[new].peer_url();
    let updated = etcdctl(
        &all,
        &[
            "member",
            "update",
            &new_id,
            &format!("--peer-urls={moved_url}"),
        ],
    )
    .await;
    assert!(updated.contains("updated in cluster"), "{updated}");
    cluster.spawn(new, "existing");
    etcdctl_until(&new_endpoint, &["get", "from-new"], |out| {
        out == "from-new\n1\n"
    })
    .await;
    assert_eq!(
        etcdctl(&new_endpoint, &["put", "after-move", "1"])
            .await
            .trim(),
        "OK"
    );
    let moved = format!("{new_id}, started, m3, {moved_url}, ");
    let list = etcdctl_until(&all, &["member", "list"], |out| out.contains(&moved)).await;
    assert!(list.contains(&moved), "{list}");

    // Remove it again.
    let removed = etcdctl(&all, &["member", "remove", &new_id]).await;
    assert!(removed.contains("removed from cluster"), "{removed}");
    let list = etcdctl_until(&all, &["member", "list"], |out| out.lines().count() == 3).await;
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(!list.contains(&new_id), "{list}");
    let unknown = etcdctl(&all, &["member", "remove", &new_id]).await;
    assert!(unknown.contains("member not found"), "{unknown}");
}

/// The hex ID of the member named `name` in `etcdctl member list` output.
fn member_id(list: &str, name: &str) -> String {
    list.lines()
        .find(|l| l.split(", ").nth(2) == Some(name))
        .and_then(|l| l.split(", ").next())
        .unwrap_or_else(|| panic!("{name} is not in {list}"))
        .to_owned()
}
