//! Client commands over etcd's v3 API, with keel-kv's generated tonic
//! clients. Output follows etcdctl's "simple" format, so that scripts
//! written for one read the other.

pub mod endpoint;
pub mod kv;
pub mod leader;
pub mod member;
pub mod snapshot;
pub mod watch;

mod connect;

/// The largest reply the `keel` client reads, as etcd's clientv3 allows
/// (`math.MaxInt32`): a large `get --prefix` or watch batch must not fail
/// where etcdctl succeeds. tonic's default is 4 MiB.
pub const REPLY_BYTES_MAX: usize = i32::MAX as usize;

pub use connect::{Cluster, Conn, ConnArgs};

/// How list-like answers are printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteOut {
    /// One comma-separated line per item, as etcdctl prints them.
    #[default]
    Simple,
    /// A table with a header row.
    Table,
}

/// etcd writes member ids in hex without a prefix.
pub fn hex(id: u64) -> String {
    format!("{id:x}")
}

/// Bytes for people: `20 kB`, `1.2 MB`, as etcdctl shows db sizes.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 || value >= 10.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_etcdctls() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(20_480), "20 kB");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
    }
}
