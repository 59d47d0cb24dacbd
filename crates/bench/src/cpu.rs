//! CPU time of the client and of the server under test, over the timed
//! phase of a run, so that a report can say what a request cost.
//!
//! Times come from `/proc/<pid>/stat` (user + system, every thread of the
//! process, exited ones included), read when the timed phase starts and when
//! it ends; connecting and preparing the key space are outside it.

use std::io;

use serde::Serialize;

use crate::BenchError;

/// CPU used during the timed phase, in total and per acknowledged request.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cpu {
    /// User + system seconds of this client process.
    pub client_s: f64,
    pub client_us_per_ok: f64,
    /// The processes given with `--server-pids`, whose CPU is summed.
    pub server_pids: Vec<u32>,
    /// User + system seconds of those processes; `None` without
    /// `--server-pids`, or if one of them exited during the run.
    pub server_s: Option<f64>,
    pub server_us_per_ok: Option<f64>,
}

/// Readings taken when the timed phase started.
pub(crate) struct CpuMeter {
    server_pids: Vec<u32>,
    server_start_s: f64,
    client_start_s: f64,
}

impl CpuMeter {
    /// Takes the first readings; fails if a server pid cannot be read (a
    /// typo should not cost a whole run).
    pub fn start(server_pids: &[u32]) -> Result<CpuMeter, BenchError> {
        let server_start_s = processes_cpu_s(server_pids)
            .map_err(|(pid, source)| BenchError::ServerPid { pid, source })?;
        Ok(CpuMeter {
            server_pids: server_pids.to_vec(),
            server_start_s,
            client_start_s: own_cpu_s().unwrap_or(0.0),
        })
    }

    /// Takes the last readings and divides by the `ok` requests.
    pub fn stop(self, ok: u64) -> Cpu {
        let per_ok = |s: f64| if ok == 0 { 0.0 } else { s * 1e6 / ok as f64 };
        let client_s = (own_cpu_s().unwrap_or(0.0) - self.client_start_s).max(0.0);
        let server_s = if self.server_pids.is_empty() {
            None
        } else {
            match processes_cpu_s(&self.server_pids) {
                Ok(end) => Some((end - self.server_start_s).max(0.0)),
                Err((pid, e)) => {
                    eprintln!("server process {pid} cannot be read any more ({e}): no server CPU");
                    None
                }
            }
        };
        Cpu {
            client_s,
            client_us_per_ok: per_ok(client_s),
            server_pids: self.server_pids,
            server_s,
            server_us_per_ok: server_s.map(per_ok),
        }
    }
}

fn own_cpu_s() -> io::Result<f64> {
    stat_cpu_s("/proc/self/stat")
}

/// Sum over `pids`; on failure, the pid that could not be read.
fn processes_cpu_s(pids: &[u32]) -> Result<f64, (u32, io::Error)> {
    pids.iter()
        .map(|&pid| stat_cpu_s(&format!("/proc/{pid}/stat")).map_err(|e| (pid, e)))
        .sum()
}

fn stat_cpu_s(path: &str) -> io::Result<f64> {
    let stat = std::fs::read_to_string(path)?;
    let ticks = stat_ticks(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected format"),
        )
    })?;
    Ok(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// utime + stime in clock ticks: the 12th and 13th fields after the command
/// name, which is in parentheses and may itself hold spaces and parentheses.
fn stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (a b) (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    17 5 0 0 20 0 3 0 12345 1000 200";
        assert_eq!(stat_ticks(stat), Some(22));
        assert_eq!(stat_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn own_cpu_time_is_readable_and_grows() {
        let start = own_cpu_s().unwrap();
        let mut x = 0u64;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < until {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(own_cpu_s().unwrap() >= start);
        let pid = std::process::id();
        assert!(processes_cpu_s(&[pid]).unwrap() >= start);
    }
}
