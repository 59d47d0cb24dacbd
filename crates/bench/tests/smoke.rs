//! Smoke tests: the load generator against the in-memory ceiling server.
//! They check that requests are sent and counted, never how fast.

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use clap::Parser;
use keel_bench::{ArgumentError, BenchArgs, BenchError};

/// The ceiling server, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_ceiling() -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_keel-ceiling"))
        .args(["--listen", &addr])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the ceiling server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (Server(child), addr)
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn args(line: &str) -> BenchArgs {
    Cli::parse_from(std::iter::once("bench").chain(line.split_whitespace())).args
}

#[tokio::test]
async fn every_workload_completes_its_requests() {
    let (_server, addr) = start_ceiling();
    for workload in ["put", "get", "txn", "mixed"] {
        let a = args(&format!(
            "{workload} --endpoints {addr} --clients 4 --conns 2 --total 200 --no-progress"
        ));
        let report = keel_bench::run(&a).await.unwrap();
        assert_eq!(report.ok, 200, "{workload}: {report}");
        assert!(report.errors.is_empty(), "{workload}: {report}");
        assert!(report.latency.p50_us <= report.latency.p99_us);
        assert!(report.latency.p99_us <= report.latency.max_us);
    }
}

#[tokio::test]
async fn a_timed_run_draws_its_plot() {
    let (_server, addr) = start_ceiling();
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("latency.svg");
    let a = args(&format!(
        "put --endpoints {addr} --duration 300ms --rate 200 --plot {} --no-progress",
        plot.display()
    ));
    let report = keel_bench::run(&a).await.unwrap();
    assert!(
        report.ok > 0 && report.ok <= 100,
        "rate not respected: {report}"
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("<svg") && svg.contains("latency by percentile"));
}

#[tokio::test]
async fn the_report_gives_client_and_server_cpu_per_request() {
    let (server, addr) = start_ceiling();
    let pid = server.0.id();
    let a = args(&format!(
        "put --endpoints {addr} --clients 8 --total 2000 --server-pids {pid} --no-progress"
    ));
    let report = keel_bench::run(&a).await.unwrap();
    let cpu = &report.cpu;
    assert_eq!(cpu.server_pids, vec![pid]);
    let (server_s, server_us) = (cpu.server_s.unwrap(), cpu.server_us_per_ok.unwrap());
    assert!(server_s >= 0.0 && cpu.client_s >= 0.0, "{report}");
    let expected = server_s * 1e6 / report.ok as f64;
    assert!((server_us - expected).abs() < 1e-6, "{report}");
    assert!(report.to_string().contains("cpu per request"));
    // Without pids there is no server figure; a pid that is not running is refused.
    let a = args(&format!("put --endpoints {addr} --total 10 --no-progress"));
    assert_eq!(keel_bench::run(&a).await.unwrap().cpu.server_s, None);
    let a = args(&format!(
        "put --endpoints {addr} --total 10 --server-pids 4294967 --no-progress"
    ));
    assert!(matches!(
        keel_bench::run(&a).await,
        Err(BenchError::ServerPid { pid: 4294967, .. })
    ));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = args(&format!("put --endpoints 127.0.0.1:{port} --no-progress"));
    let err = keel_bench::run(&a).await.unwrap_err();
    assert!(matches!(err, BenchError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("is a server listening there?"));
}

#[tokio::test]
async fn bad_arguments_are_refused() {
    let a = args("put --clients 0");
    assert!(matches!(
        keel_bench::run(&a).await,
        Err(BenchError::Arguments(ArgumentError::NoClients))
    ));
}
