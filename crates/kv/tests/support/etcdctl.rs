//! The stock `etcdctl` (3.4) as the tests' client: every call bounded in
//! time (a watch never ends by itself), its output kept for assertions.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::time::Instant;

/// etcdctl's `--command-timeout` unless a test sets another.
const COMMAND_TIMEOUT_SECONDS: u64 = 10;
/// How long [`etcdctl_until`] keeps trying.
const UNTIL_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether `binary` is on the PATH.
pub fn have(binary: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether etcdctl is installed, after trying once to install it (Debian's
/// `etcd-client`) if it is not.
pub fn etcdctl_available() -> bool {
    if !have("etcdctl") {
        let _ = std::process::Command::new("timeout")
            .args(["300", "apt-get", "install", "-y", "-q", "etcd-client"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    have("etcdctl")
}

/// What one etcdctl run printed.
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout, then etcdctl's verdicts from stderr (`Error…`, health lines,
    /// a canceled watch) without the retry logs it also writes there,
    /// which differ from run to run.
    pub fn text(&self) -> String {
        let verdicts: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| {
                l.starts_with("Error")
                    || l.starts_with("watch was canceled")
                    || l.contains("healthy")
            })
            .collect();
        format!("{}{}", self.stdout, verdicts.join("\n"))
    }

    /// Everything it printed: stdout, then stderr.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// An etcdctl command line: endpoints, flags every call gets (TLS,
/// `--user`) and the command timeout.
#[derive(Clone)]
pub struct Etcdctl {
    endpoints: String,
    flags: Vec<String>,
    command_timeout_seconds: u64,
}

impl Etcdctl {
    pub fn new(endpoints: &str) -> Etcdctl {
        Etcdctl {
            endpoints: endpoints.to_owned(),
            flags: Vec::new(),
            command_timeout_seconds: COMMAND_TIMEOUT_SECONDS,
        }
    }

    /// Adds flags to every call.
    pub fn flags<S: AsRef<str>>(mut self, flags: &[S]) -> Etcdctl {
        self.flags
            .extend(flags.iter().map(|f| f.as_ref().to_owned()));
        self
    }

    pub fn command_timeout_seconds(mut self, seconds: u64) -> Etcdctl {
        self.command_timeout_seconds = seconds;
        self
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, None).await
    }

    /// Runs `etcdctl ARGS` with `input` on its stdin. The process is
    /// killed a second after its command timeout (a watch never ends by
    /// itself); what it printed until then is the output.
    pub async fn run_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut child = Command::new("timeout")
            .args(["-s", "KILL"])
            .arg((self.command_timeout_seconds + 1).to_string())
            .arg("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints))
            .arg("--dial-timeout=2s")
            .arg(format!(
                "--command-timeout={}s",
                self.command_timeout_seconds
            ))
            .args(&self.flags)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("timeout(1) and etcdctl run");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        if let Some(text) = input {
            stdin
                .write_all(text.as_bytes())
                .await
                .expect("etcdctl reads its stdin");
        }
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .expect("etcdctl's output is readable");
        Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `etcdctl ARGS` until `accept` likes its [`Output::text`]
    /// (bounded in time); returns that text.
    pub async fn until(&self, args: &[&str], accept: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + UNTIL_TIMEOUT;
        loop {
            let out = self.run(args).await.text();
            if accept(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "etcdctl {args:?} never succeeded; last: {out}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `etcdctl ARGS` against `endpoints`: its [`Output::text`].
pub async fn etcdctl(endpoints: &str, args: &[&str]) -> String {
    Etcdctl::new(endpoints).run(args).await.text()
}

/// [`etcdctl`] with `input` on its stdin (an interactive txn).
pub async fn etcdctl_with_input(endpoints: &str, args: &[&str], input: &str) -> String {
    Etcdctl::new(endpoints)
        .run_with_input(args, Some(input))
        .await
        .text()
}

/// [`etcdctl`] until `accept` likes the output (bounded in time).
pub async fn etcdctl_until(
    endpoints: &str,
    args: &[&str],
    accept: impl Fn(&str) -> bool,
) -> String {
    Etcdctl::new(endpoints).until(args, accept).await
}
