//! A member's disk filling up, on a real three-member cluster (three
//! `keel-kv` processes) driven by the stock `etcdctl` 3.4. One member
//! keeps its data directory on a small tmpfs of its own, which the test
//! fills with a file to bring it close to full:
//!
//! - with a disk reserve, that member raises the NOSPACE alarm before its
//!   disk is full: every member lists the alarm in its name and refuses
//!   puts with etcd's error while gets and deletes work; the member keeps
//!   running; disarming while space is still short brings the alarm back,
//!   and freeing space then disarming brings writes back;
//! - without one, its store's writes fail for lack of space: that member
//!   stops with one sentence naming the store, the file, the OS error and
//!   what to do, the other two go on acknowledging writes, and once space
//!   is freed the restarted member catches up.
//!
//! In both, every acknowledged put is read back from every member.
//!
//! Mounting a tmpfs needs root, which CI and the development machines
//! have; elsewhere the tests say why they skip, and pass. They skip too
//! when `etcdctl` is not installed.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::Cluster;
use support::etcdctl::{Etcdctl, etcdctl, etcdctl_available, etcdctl_until};
use tokio::time::Instant;

/// The member whose data directory is on the small filesystem.
const SMALL: usize = 2;
/// The small filesystem: room for one Raft log segment (64 MiB,
/// preallocated), the store, its snapshots, and the filler file.
const TMPFS_MIB: u64 = 256;
/// The reserve of the first test, and what the filler leaves above it.
const RESERVE_BYTES: u64 = 96 << 20;
const HEADROOM_BYTES: u64 = 24 << 20;
/// Snapshots often, so that the store's writes reach the disk often: they
/// stay in redb's write buffer until the flush before each snapshot.
const SNAPSHOT_COUNT: &str = "--snapshot-count=20";
const VALUE_BYTES: usize = 500_000;
/// Puts tried before the disk must have refused (or failed) one.
const FILL_PUTS_MAX: usize = 300;
/// Bounds the wait for the small member to stop once its disk is full.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

/// A tmpfs mounted for the test, unmounted when dropped (lazily: the
/// member may still hold files in it for a moment).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` MiB at `dir` (created first); `None`
    /// when mounting is not permitted (not root).
    fn mount(dir: &Path, size_mib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| Tmpfs {
            dir: dir.to_owned(),
        })
    }

    fn free_bytes(&self) -> u64 {
        keel_kv::service::free_bytes(&self.dir).unwrap()
    }

    /// Writes a file of zeros that leaves `leave_bytes` free.
    fn fill_leaving(&self, leave_bytes: u64) -> PathBuf {
        let path = self.dir.join("filler");
        let fill = self
            .free_bytes()
            .checked_sub(leave_bytes)
            .expect("the filesystem has more than the bytes to leave free");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 1 << 20];
        let mut left = fill;
        while left > 0 {
            let n = left.min(chunk.len() as u64);
            file.write_all(&chunk[..n as usize]).unwrap();
            left -= n;
        }
        file.sync_all().unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Whether the tests can run here: etcdctl installed and a tmpfs
/// mountable (tried once in a scratch directory); if not, says why.
fn can_run() -> bool {
    if !etcdctl_available() {
        eprintln!("skipping: etcdctl is not installed");
        return false;
    }
    let scratch = tempfile::tempdir().unwrap();
    if Tmpfs::mount(&scratch.path().join("probe"), 1).is_none() {
        eprintln!("skipping: mounting a tmpfs is not permitted here (the test must run as root)");
        return false;
    }
    true
}

/// Starts three members with `flags`, member [`SMALL`] on its own tmpfs.
async fn cluster_with_a_small_disk(flags: &[&str]) -> (Cluster, Tmpfs) {
    Cluster::start_prepared(3, flags, |cluster| {
        Tmpfs::mount(&cluster.members[SMALL].dir, TMPFS_MIB)
            .expect("mounting a tmpfs worked a moment ago")
    })
    .await
}

fn value_of(i: usize) -> String {
    format!("{i:05}").repeat(VALUE_BYTES / 5)
}

/// `etcdctl put KEY` with the value on stdin (it is too long for an
/// argument).
async fn put(endpoint: &str, key: &str, value: &str) -> String {
    Etcdctl::new(endpoint)
        .run_with_input(&["put", key], Some(value))
        .await
        .text()
}

/// Asserts that every member returns every acknowledged value.
async fn assert_all_readable(endpoints: &[String], acknowledged: &BTreeMap<String, String>) {
    for endpoint in endpoints {
        for (key, value) in acknowledged {
            let got = etcdctl(
                endpoint,
                &["get", key, "--consistency=s", "--print-value-only"],
            )
            .await;
            assert!(got.trim() == value, "{endpoint}: {key} is lost or wrong");
        }
    }
}

/// `(revision, hash)` from `endpoint hashkv -w json`.
fn hashkv(out: &str) -> Option<(i64, i64)> {
    let json: serde_json::Value = serde_json::from_str(out).ok()?;
    let status = &json[0]["HashKV"];
    Some((
        status["header"]["revision"].as_i64()?,
        status["hash"].as_i64()?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_short_of_disk_raises_nospace_for_the_cluster_and_keeps_running() {
    if !can_run() {
        return;
    }
    let reserve = format!("--disk-reserve-bytes={RESERVE_BYTES}");
    let (mut cluster, tmpfs) = cluster_with_a_small_disk(&[&reserve, SNAPSHOT_COUNT]).await;
    let endpoints: Vec<String> = (0..3).map(|i| cluster.members[i].endpoint()).collect();
    let (small_id, _) = cluster.status(SMALL).await.expect("the member answers");
    let filler = tmpfs.fill_leaving(RESERVE_BYTES + HEADROOM_BYTES);

    // Fill the store through every member in turn until one refuses.
    let mut acknowledged = BTreeMap::new();
    let mut refusal = None;
    for i in 0..FILL_PUTS_MAX {
        let key = format!("k{i:03}");
        let out = put(&endpoints[i % 3], &key, &value_of(i)).await;
        if out.trim() == "OK" {
            acknowledged.insert(key, value_of(i));
        } else {
            refusal = Some(out);
            break;
        }
    }
    let refusal = refusal.expect("the disk reserve never refused a put");
    assert!(refusal.contains(NO_SPACE), "{refusal}");
    assert!(acknowledged.len() >= 3, "{} puts fit", acknowledged.len());

    // The alarm names the small member on every member, which refuse
    // growing writes with etcd's error while reads and deletes work.
    let alarm = format!("memberID:{small_id} alarm:NOSPACE");
    for endpoint in &endpoints {
        etcdctl_until(endpoint, &["alarm", "list"], |out| out.trim() == alarm).await;
        let refused = etcdctl(endpoint, &["put", "small", "v"]).await;
        assert!(refused.contains(NO_SPACE), "{endpoint}: {refused}");
        let (key, value) = acknowledged.iter().next_back().unwrap();
        let got = etcdctl(endpoint, &["get", key, "--print-value-only"]).await;
        assert!(got.trim() == value, "{endpoint}: {key}");
    }
    let doomed: Vec<String> = acknowledged.keys().take(3).cloned().collect();
    for (n, key) in doomed.iter().enumerate() {
        let out = etcdctl(&endpoints[n % 3], &["del", key]).await;
        assert_eq!(out.trim(), "1", "del {key}");
        acknowledged.remove(key);
    }
    // The member is still up, and its disk never filled.
    assert!(cluster.members[SMALL].is_running());
    assert!(tmpfs.free_bytes() > HEADROOM_BYTES, "{}", tmpfs.free_bytes());
    let log = cluster.members[SMALL].log();
    assert!(
        log.contains("free disk space is below --disk-reserve-bytes"),
        "no warning in the small member's log"
    );

    // Disarmed while space is still short, the alarm comes back.
    let disarmed = etcdctl(&endpoints[0], &["alarm", "disarm"]).await;
    assert!(disarmed.contains(&alarm), "{disarmed}");
    etcdctl_until(&endpoints[1], &["alarm", "list"], |out| out.trim() == alarm).await;

    // Space freed, then disarmed: writes come back, and stay back.
    std::fs::remove_file(filler).unwrap();
    let disarmed = etcdctl(&endpoints[1], &["alarm", "disarm"]).await;
    assert!(disarmed.contains(&alarm), "{disarmed}");
    for endpoint in &endpoints {
        etcdctl_until(endpoint, &["alarm", "list"], |out| out.trim().is_empty()).await;
    }
    tokio::time::sleep(3 * keel_kv::service::DISK_CHECK_EVERY).await;
    for (n, endpoint) in endpoints.iter().enumerate() {
        assert!(etcdctl(endpoint, &["alarm", "list"]).await.trim().is_empty());
        let key = format!("after{n}");
        assert_eq!(put(endpoint, &key, &value_of(n)).await.trim(), "OK");
        acknowledged.insert(key, value_of(n));
    }

    // Nothing acknowledged was lost, on any member.
    assert_all_readable(&endpoints, &acknowledged).await;
    for key in &doomed {
        let got = etcdctl(&endpoints[SMALL], &["get", key]).await;
        assert!(got.trim().is_empty(), "{key} was deleted: {got}");
    }
    drop(cluster);
    drop(tmpfs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_disk_fills_stops_with_a_clear_message_and_catches_up_after() {
    if !can_run() {
        return;
    }
    let (mut cluster, tmpfs) =
        cluster_with_a_small_disk(&["--disk-reserve-bytes=0", SNAPSHOT_COUNT]).await;
    let endpoints: Vec<String> = (0..3).map(|i| cluster.members[i].endpoint()).collect();
    let healthy = &endpoints[..SMALL];
    // Leadership stays off the small member, so that its stop costs no
    // election and every put below must succeed.
    if cluster.wait_leader().await == SMALL {
        let (first, _) = cluster.status(0).await.expect("member 0 answers");
        let moved = etcdctl(
            &endpoints.join(","),
            &["move-leader", &format!("{first:x}")],
        )
        .await;
        assert!(moved.contains("Leadership transferred"), "{moved}");
    }
    let filler = tmpfs.fill_leaving(HEADROOM_BYTES);

    // Writes through the two others go on until the small member's disk
    // fails it, and after.
    let mut acknowledged = BTreeMap::new();
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut i = 0;
    let status = loop {
        if let Some(status) = cluster.members[SMALL].exit_status() {
            break status;
        }
        assert!(
            i < FILL_PUTS_MAX && Instant::now() < deadline,
            "the small member still runs after {i} puts"
        );
        let key = format!("k{i:03}");
        let out = put(&healthy[i % 2], &key, &value_of(i)).await;
        assert_eq!(out.trim(), "OK", "put {key}");
        acknowledged.insert(key, value_of(i));
        i += 1;
    };
    assert!(!status.success(), "{status}");
    for n in 0..10 {
        let key = format!("after{n}");
        let out = put(&healthy[n % 2], &key, &value_of(n)).await;
        assert_eq!(out.trim(), "OK", "put {key} with one member down");
        acknowledged.insert(key, value_of(n));
    }

    // One sentence says what failed, where, why and what to do; no panic.
    let log = cluster.members[SMALL].log();
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("Error: this member stopped: the "),
        "last line: {last}"
    );
    assert!(
        last.contains(&tmpfs.dir.display().to_string()),
        "no path: {last}"
    );
    assert!(
        last.contains("No space left on device (os error 28)"),
        "{last}"
    );
    assert!(
        last.contains("free space on it (or grow it), then restart this member"),
        "{last}"
    );
    assert!(!log.contains("panicked"), "a panic in the log");
    assert!(!log.to_lowercase().contains("backtrace"), "a backtrace");

    // Space freed, the member restarts and catches up.
    std::fs::remove_file(filler).unwrap();
    cluster.spawn(SMALL, "new");
    cluster.wait_serving(SMALL).await;
    assert_all_readable(&endpoints, &acknowledged).await;
    let reference = hashkv(&etcdctl(&endpoints[0], &["endpoint", "hashkv", "-w", "json"]).await);
    assert!(reference.is_some(), "member 0 has no HashKV");
    for endpoint in &endpoints {
        etcdctl_until(endpoint, &["endpoint", "hashkv", "-w", "json"], |out| {
            hashkv(out) == reference
        })
        .await;
    }
    drop(cluster);
    drop(tmpfs);
}
