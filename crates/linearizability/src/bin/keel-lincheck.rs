//! `keel-lincheck`: checks a JSON Lines history file for linearizability.
//!
//! Exit codes (so scripts and CI can branch on the verdict):
//! 0 linearizable, 1 not linearizable, 2 usage / I/O / parse error,
//! 3 search budget exhausted (verdict unknown).

use std::fs::File;
use std::io::{self, Read};
use std::process::ExitCode;

use keel_linearizability::{CheckConfig, CheckResult, History, check_with};

const USAGE: &str = "usage: keel-lincheck [--max-steps N] <history.jsonl | ->";

struct Args {
    path: String,
    config: CheckConfig,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut config = CheckConfig::default();
    let mut path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(USAGE.to_owned()),
            "--max-steps" => {
                let n = args.next().ok_or("--max-steps needs a number")?;
                config.max_steps = n.parse().map_err(|e| format!("--max-steps {n:?}: {e}"))?;
            }
            _ if path.is_none() => path = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}\n{USAGE}")),
        }
    }
    let path = path.ok_or_else(|| USAGE.to_owned())?;
    Ok(Args { path, config })
}

fn open(path: &str) -> io::Result<Box<dyn Read>> {
    if path == "-" {
        Ok(Box::new(io::stdin().lock()))
    } else {
        Ok(Box::new(File::open(path)?))
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let reader = match open(&args.path) {
        Ok(reader) => reader,
        Err(e) => {
            eprintln!("keel-lincheck: cannot open {}: {e}", args.path);
            return ExitCode::from(2);
        }
    };
    let history = match History::from_jsonl(reader) {
        Ok(history) => history,
        Err(e) => {
            eprintln!("keel-lincheck: {}: {e}", args.path);
            return ExitCode::from(2);
        }
    };
    let result = check_with(&history, &args.config);
    println!("{}: {} operations: {result}", args.path, history.len());
    match result {
        CheckResult::Linearizable => ExitCode::SUCCESS,
        CheckResult::NotLinearizable { .. } => ExitCode::from(1),
        CheckResult::Timeout { .. } => ExitCode::from(3),
    }
}
