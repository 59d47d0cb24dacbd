//! Keel against etcd over fixed seeds: every reply of a 3-member Keel
//! cluster must equal a single etcd's, except for the differences
//! documented in docs/etcd-compatibility.md.
//!
//! Skips (passing, with a message) when `etcd` is not installed;
//! `scripts/test` installs it.

use std::time::Duration;

use keel_difftest::process::{find_binary, start_etcd, start_keel};
use keel_difftest::run::{RunConfig, run};
use keel_difftest::target::Target;

/// Fresh systems per seed, so that each seed replays alone with
/// `keel-difftest --seed N --requests 800`.
const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];
const REQUESTS_PER_SEED: usize = 800;
/// A bound on each seed's requests, far above what they take.
const SEED_TIME_MAX: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_answers_every_request_as_etcd_does() {
    let Some(etcd_bin) = find_binary("etcd") else {
        eprintln!("SKIPPED: etcd is not installed (scripts/test installs etcd-server)");
        return;
    };
    let keel_bin = find_binary("keel-kv")
        .expect("no keel-kv binary beside the tests: run `cargo build -p keel-kv` first");
    let mut failures = Vec::new();
    let mut requests = 0;
    for seed in SEEDS {
        let dir = tempfile::tempdir().unwrap();
        let etcd = start_etcd(&etcd_bin, dir.path()).await.unwrap();
        let keel = start_keel(&keel_bin, dir.path(), 3).await.unwrap();
        let config = RunConfig {
            seed,
            requests: REQUESTS_PER_SEED,
            time_max: SEED_TIME_MAX,
            trace: false,
        };
        let summary = run(
            &Target::new(&etcd.endpoints).unwrap(),
            &Target::new(&keel.endpoints).unwrap(),
            config,
        )
        .await;
        requests += summary.requests;
        failures.extend(summary.unexpected().take(3).map(|d| d.to_string()));
        if let Some(index) = summary.lost_at {
            failures.push(format!(
                "seed {seed}: a system stopped answering at request {index}"
            ));
        } else if summary.requests < REQUESTS_PER_SEED {
            failures.push(format!(
                "seed {seed}: ran out of time after {} requests",
                summary.requests
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "Keel diverged from etcd (replay with `keel-difftest --seed N --requests {REQUESTS_PER_SEED} --trace`):\n{}",
        failures.join("\n")
    );
    eprintln!(
        "{requests} requests over {} seeds: no divergence",
        SEEDS.len()
    );
}
