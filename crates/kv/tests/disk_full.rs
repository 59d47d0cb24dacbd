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
//!   is freed the restarted member catches up;
//! - on a disk whose device fails writes (ext4 on a loop device whose
//!   backing file outgrows its own small tmpfs: the kernel then fails the
//!   writeback, and `fdatasync` returns EIO, as on a failing disk), the
//!   Raft log's fsync fails: the member stops with the same kind of
//!   sentence, the others go on, and once the device is repaired the
//!   restarted member catches up.
//!
//! In each, every acknowledged put is read back from every member.
//!
//! Mounting needs root, which CI and the development machines have;
//! elsewhere the tests say why they skip, and pass. They skip too when
//! `etcdctl` (or, for the failing device, `losetup` and `mkfs.ext4`) is
//! not installed.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
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

/// The failing device's filesystem, and the tmpfs that holds its backing
/// file: far smaller than the filesystem, so that the device fails writes
/// once the test fills the tmpfs.
const IMAGE_BYTES: u64 = 512 << 20;
const BACKING_MIB: u64 = 96;
/// What the filler leaves of the backing tmpfs: a few puts' worth.
const BACKING_HEADROOM_BYTES: u64 = 8 << 20;

/// An ext4 filesystem on a loop device over a sparse file on a small
/// tmpfs. Writes land in the page cache; once the tmpfs is full, their
/// writeback fails and `fsync` reports EIO, as a failing disk does.
/// Unmounted and detached when dropped.
struct FailingDisk {
    mount: PathBuf,
    device: String,
    backing: Tmpfs,
}

/// Runs a setup command; whether it succeeded.
fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl FailingDisk {
    /// Makes one mounted at `mount`, its backing tmpfs at `backing_dir`;
    /// `None` if this machine cannot (no root, no loop devices, no tools).
    fn create(mount: &Path, backing_dir: &Path) -> Option<FailingDisk> {
        let backing = Tmpfs::mount(backing_dir, BACKING_MIB)?;
        let image = backing_dir.join("disk.img");
        std::fs::File::create(&image)
            .ok()?
            .set_len(IMAGE_BYTES)
            .ok()?;
        let image = image.to_str()?;
        // Inode tables and journal written now, not by a kernel thread
        // while the test measures the tmpfs.
        let flags = "lazy_itable_init=0,lazy_journal_init=0";
        if !run("mkfs.ext4", &["-q", "-F", "-E", flags, image]) {
            return None;
        }
        let attached = Command::new("losetup")
            .args(["-f", "--show", image])
            .output()
            .ok()
            .filter(|out| out.status.success())?;
        let device = String::from_utf8(attached.stdout).ok()?.trim().to_owned();
        std::fs::create_dir_all(mount).ok()?;
        let disk = FailingDisk {
            mount: mount.to_owned(),
            device,
            backing,
        };
        run("mount", &[&disk.device, mount.to_str()?]).then_some(disk)
    }

    /// After the device failed: frees its backing space, checks the
    /// filesystem (its journal was aborted) and mounts it again.
    fn repair(&self, filler: &Path) {
        std::fs::remove_file(filler).unwrap();
        let mount = self.mount.to_str().unwrap();
        assert!(run("umount", &[mount]), "unmounting {mount}");
        // e2fsck exits 1 when it fixed something, which is expected here.
        let checked = Command::new("e2fsck")
            .args(["-f", "-y", &self.device])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(matches!(checked.code(), Some(0 | 1)), "e2fsck: {checked}");
        assert!(run("mount", &[&self.device, mount]), "remounting {mount}");
    }
}

impl Drop for FailingDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
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
        // A linearizable read first: the member has applied every write
        // acknowledged through the others, and its own store must show it.
        etcdctl(endpoint, &["get", "barrier"]).await;
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

/// Moves leadership off member [`SMALL`], so that its stop costs no
/// election and every put through the others must succeed.
async fn lead_elsewhere(cluster: &Cluster, endpoints: &[String]) {
    if cluster.wait_leader().await != SMALL {
        return;
    }
    let (first, _) = cluster.status(0).await.expect("member 0 answers");
    let moved = etcdctl(
        &endpoints.join(","),
        &["move-leader", &format!("{first:x}")],
    )
    .await;
    assert!(moved.contains("Leadership transferred"), "{moved}");
}

/// Puts through the members other than [`SMALL`] until [`SMALL`]'s
/// process ends (bounded), then ten more: each must be acknowledged.
/// Returns how it ended, how many puts it took, and what was put.
async fn put_until_small_stops(
    cluster: &mut Cluster,
    endpoints: &[String],
) -> (ExitStatus, usize, BTreeMap<String, String>) {
    let healthy = &endpoints[..SMALL];
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
    for n in 0..10 {
        let key = format!("after{n}");
        let out = put(&healthy[n % 2], &key, &value_of(n)).await;
        assert_eq!(out.trim(), "OK", "put {key} with one member down");
        acknowledged.insert(key, value_of(n));
    }
    (status, i, acknowledged)
}

/// Restarts member [`SMALL`] and checks that it caught up: every
/// acknowledged value on every member, and equal hashes at equal
/// revisions.
async fn restart_and_compare(
    cluster: &mut Cluster,
    endpoints: &[String],
    acknowledged: &BTreeMap<String, String>,
) {
    let restarted = Instant::now();
    cluster.spawn(SMALL, "new");
    cluster.wait_serving(SMALL).await;
    eprintln!("restarted and caught up in {:?}", restarted.elapsed());
    assert_all_readable(endpoints, acknowledged).await;
    let reference = hashkv(&etcdctl(&endpoints[0], &["endpoint", "hashkv", "-w", "json"]).await);
    assert!(reference.is_some(), "member 0 has no HashKV");
    for endpoint in endpoints {
        etcdctl_until(endpoint, &["endpoint", "hashkv", "-w", "json"], |out| {
            hashkv(out) == reference
        })
        .await;
    }
}

/// The last line of member [`SMALL`]'s stderr, after checking that it
/// shows no panic and no backtrace.
fn last_words(cluster: &Cluster) -> String {
    let log = cluster.members[SMALL].log();
    assert!(!log.contains("panicked"), "a panic in the log");
    assert!(!log.to_lowercase().contains("backtrace"), "a backtrace");
    log.lines().last().unwrap_or_default().to_owned()
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
    eprintln!(
        "refused after {} puts of {VALUE_BYTES} bytes; {} bytes free on the small disk",
        acknowledged.len(),
        tmpfs.free_bytes()
    );

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
    assert!(
        tmpfs.free_bytes() > HEADROOM_BYTES,
        "{}",
        tmpfs.free_bytes()
    );
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
        assert!(
            etcdctl(endpoint, &["alarm", "list"])
                .await
                .trim()
                .is_empty()
        );
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
    lead_elsewhere(&cluster, &endpoints).await;
    let filler = tmpfs.fill_leaving(HEADROOM_BYTES);

    // Writes through the two others go on until the small member's disk
    // fails it, and after.
    let (status, puts, acknowledged) = put_until_small_stops(&mut cluster, &endpoints).await;
    assert!(!status.success(), "{status}");
    eprintln!(
        "the small member stopped ({status}) after {puts} puts of {VALUE_BYTES} bytes; {} bytes free",
        tmpfs.free_bytes()
    );

    // One sentence says what failed, where, why and what to do.
    let last = last_words(&cluster);
    eprintln!("its last words: {last}");
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

    // Space freed, the member restarts and catches up.
    std::fs::remove_file(filler).unwrap();
    restart_and_compare(&mut cluster, &endpoints, &acknowledged).await;
    drop(cluster);
    drop(tmpfs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_log_fsync_fails_stops_with_a_clear_message_and_catches_up_after() {
    if !can_run() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    if FailingDisk::create(&scratch.path().join("mnt"), &scratch.path().join("backing")).is_none() {
        eprintln!("skipping: no loop device, mkfs.ext4 or losetup here");
        return;
    }
    // The default snapshot count: the store's writes stay in redb's write
    // buffer, so the first write to reach the device is the log's.
    let (mut cluster, disk) = Cluster::start_prepared(3, &[], |cluster| {
        let backing = cluster.root().join("backing");
        FailingDisk::create(&cluster.members[SMALL].dir, &backing)
            .expect("a failing disk could be made a moment ago")
    })
    .await;
    let endpoints: Vec<String> = (0..3).map(|i| cluster.members[i].endpoint()).collect();
    lead_elsewhere(&cluster, &endpoints).await;
    let filler = disk.backing.fill_leaving(BACKING_HEADROOM_BYTES);

    let (status, puts, acknowledged) = put_until_small_stops(&mut cluster, &endpoints).await;
    assert!(!status.success(), "{status}");
    eprintln!("the small member stopped ({status}) after {puts} puts of {VALUE_BYTES} bytes");

    let last = last_words(&cluster);
    eprintln!("its last words: {last}");
    let wal_dir = disk.mount.join("raft").display().to_string();
    assert!(
        last.starts_with(&format!(
            "Error: this member stopped: the Raft log could not fdatasync {wal_dir}"
        )),
        "last line: {last}"
    );
    assert!(last.contains("Input/output error (os error 5)"), "{last}");
    assert!(
        last.contains("The device failed: check it (the kernel log says more)"),
        "{last}"
    );

    // The device repaired, the member restarts and catches up.
    disk.repair(&filler);
    restart_and_compare(&mut cluster, &endpoints, &acknowledged).await;
    drop(cluster);
    drop(disk);
}
