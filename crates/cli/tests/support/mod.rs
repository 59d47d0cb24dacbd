//! Running the built `keel` binary from tests: bounded waits, free ports,
//! and guards that leave no process behind, even when a test fails.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod local_cluster;
#[allow(unused_imports)] // Only the tests that run a whole cluster use it.
pub use local_cluster::LocalCluster;

pub const KEEL: &str = env!("CARGO_BIN_EXE_keel");

/// A `keel` command with no `KEEL_*` settings from the environment.
pub fn keel(args: &[&str]) -> Command {
    let mut command = Command::new(KEEL);
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("KEEL_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `command` to completion, killing it after `timeout`.
pub fn run_bounded(mut command: Command, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keel");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{command:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `keel args…` and returns its stdout, failing the test on an error.
pub fn keel_ok(args: &[&str]) -> String {
    let output = run_bounded(keel(args), Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "keel {args:?} failed: {}\nstdout: {stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `keel args…`: whether it succeeded, and its stdout, or its stderr when
/// it failed.
pub fn keel_run(args: &[&str]) -> (bool, String) {
    let output = run_bounded(keel(args), Duration::from_secs(30));
    let text = if output.status.success() {
        output.stdout
    } else {
        output.stderr
    };
    (
        output.status.success(),
        String::from_utf8_lossy(&text).into_owned(),
    )
}

/// `etcdctl --endpoints <endpoints> args…`, bounded in time, whatever it
/// answered.
pub fn etcdctl_output(endpoints: &str, args: &[&str]) -> Output {
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .args(args);
    run_bounded(command, Duration::from_secs(30))
}

/// `etcdctl --endpoints <endpoints> args…`, its stdout; fails the test on
/// an error.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> String {
    let output = etcdctl_output(endpoints, args);
    assert!(
        output.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Retries `check` until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn port_free(port: u32) -> bool {
    u16::try_from(port).is_ok_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// Port blocks handed out by this test process, so that its parallel tests
/// never pick the same one.
static NEXT_BLOCK: AtomicU32 = AtomicU32::new(0);

/// A base port whose `members` blocks of three (BASE+100·i, +1, +2) are
/// all free. Bases lie below Linux's ephemeral range (32768 and up), where
/// outgoing connections could take them, and are spread by process id so
/// that parallel test processes rarely try the same.
pub fn free_base_port(members: u32) -> u16 {
    const BLOCKS: u32 = 220; // 10079 ..= 31979
    let seed = std::process::id() % BLOCKS;
    for _ in 0..BLOCKS {
        let block = NEXT_BLOCK.fetch_add(members, Ordering::Relaxed);
        let base = 10_079 + ((seed + block) % (BLOCKS - members)) * 100;
        let ports = (0..members).flat_map(|i| (0..3).map(move |k| base + 100 * i + k));
        if ports.clone().all(port_free) {
            return base as u16;
        }
    }
    panic!("no free block of ports found");
}

/// A free loopback port (closed again; a small race we accept in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Processes whose command line mentions `dir` (members of a cluster kept
/// there).
pub fn processes_using(dir: &Path) -> Vec<u32> {
    let wanted = dir.display().to_string();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !zombie && String::from_utf8_lossy(&cmdline).contains(&wanted)
        })
        .collect()
}

/// Kills a child on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM to `pid`.
pub fn terminate(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

/// Sends SIGKILL to `pid`.
pub fn kill_hard(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// Lines a child prints, as they come.
pub fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns every line read so far.
pub fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    needle: &str,
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {needle:?} within {timeout:?}; got {seen:#?}"),
        }
    }
}

/// `GET path` over HTTP/1.0: (status code, body).
pub fn http_get(authority: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(authority).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

pub fn have(binary: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
