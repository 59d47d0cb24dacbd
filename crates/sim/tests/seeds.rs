//! The default seed set: 520 seeds with every fault class, split into
//! batches so the test harness runs them on all cores. Any failure prints
//! the seed, the violated property and the last events, and how to replay.

use keel_sim::{RunReport, SimOptions, run_seed};

/// Seeds per batch; 13 batches make 520 seeds.
const BATCH: u64 = 40;

fn options() -> SimOptions {
    SimOptions {
        safety_ticks: 400,
        heal_ticks: 250,
        ..SimOptions::default()
    }
}

fn explain(report: &RunReport) -> String {
    let failure = report
        .failure
        .as_ref()
        .expect("only failures are explained");
    format!(
        "seed {} broke {} at {}:\n{}\nlast events:\n  {}\nreplay: cargo run --release -p keel-sim -- --seed {} --ticks {} --heal-ticks {} --trace",
        report.seed,
        failure.violation.invariant,
        failure.at,
        failure.violation.detail,
        failure.trace_tail.join("\n  "),
        report.seed,
        options().safety_ticks,
        options().heal_ticks,
    )
}

fn run_batch(batch: u64) {
    let options = options();
    for seed in batch * BATCH..(batch + 1) * BATCH {
        let report = run_seed(seed, &options);
        assert!(report.passed(), "{}", explain(&report));
    }
}

macro_rules! batches {
    ($($name:ident = $batch:expr;)*) => {
        $(
            #[test]
            fn $name() {
                run_batch($batch);
            }
        )*
    };
}

batches! {
    seeds_0000_0039 = 0;
    seeds_0040_0079 = 1;
    seeds_0080_0119 = 2;
    seeds_0120_0159 = 3;
    seeds_0160_0199 = 4;
    seeds_0200_0239 = 5;
    seeds_0240_0279 = 6;
    seeds_0280_0319 = 7;
    seeds_0320_0359 = 8;
    seeds_0360_0399 = 9;
    seeds_0400_0439 = 10;
    seeds_0440_0479 = 11;
    seeds_0480_0519 = 12;
}
