//! `keel put`, `keel get`, `keel del`: KV/Put, KV/Range and
//! KV/DeleteRange, printed as etcdctl prints them.

use clap::Args;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use keel_kv::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
use keel_kv::proto::mvccpb::KeyValue;

use super::{Cluster, ConnArgs};

/// etcd's range end for "every key with this prefix": the prefix with its
/// last byte below 0xff incremented, or `\0` (everything) if there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A key and an optional range end, as positional arguments.
#[derive(Args, Debug)]
pub struct KeyRange {
    /// The key, or the start of a range.
    pub key: String,
    /// The end of the range, exclusive (keys in [KEY, RANGE_END)).
    pub range_end: Option<String>,
    /// Take every key that starts with KEY.
    #[arg(long, conflicts_with = "range_end")]
    pub prefix: bool,
}

impl KeyRange {
    /// etcd's `(key, range_end)`; an empty prefix means every key, which
    /// etcd writes as `("\0", "\0")`.
    pub fn bounds(&self) -> (Vec<u8>, Vec<u8>) {
        let key = self.key.as_bytes().to_vec();
        match (&self.range_end, self.prefix) {
            (Some(end), _) => (key, end.as_bytes().to_vec()),
            (None, true) if key.is_empty() => (vec![0], vec![0]),
            (None, true) => {
                let end = prefix_end(&key);
                (key, end)
            }
            (None, false) => (key, Vec::new()),
        }
    }
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// The key to write.
    pub key: String,
    /// The value to write.
    pub value: String,
    /// Attach the key to this lease (hex id), so it goes when the lease
    /// expires.
    #[arg(long, value_parser = parse_lease, value_name = "ID")]
    pub lease: Option<i64>,
    /// Also print the value this write replaced.
    #[arg(long)]
    pub prev_kv: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

fn parse_lease(text: &str) -> Result<i64, String> {
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .map(|id| id as i64)
        .map_err(|_| format!("`{text}` is not a hex lease id"))
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub range: KeyRange,
    /// Read at this past revision instead of the latest.
    #[arg(long, default_value_t = 0, value_name = "REVISION")]
    pub rev: i64,
    /// Return at most this many keys (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Print only the keys.
    #[arg(long, conflicts_with = "print_value_only")]
    pub keys_only: bool,
    /// Print only the values.
    #[arg(long)]
    pub print_value_only: bool,
    /// Read from the member's local state, which may be behind the
    /// cluster, instead of a linearizable read.
    #[arg(long)]
    pub serializable: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct DelArgs {
    #[command(flatten)]
    pub range: KeyRange,
    /// Also print the deleted keys and values.
    #[arg(long)]
    pub prev_kv: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

fn print_kv(kv: &KeyValue, keys: bool, values: bool) {
    if keys {
        println!("{}", String::from_utf8_lossy(&kv.key));
    }
    if values {
        println!("{}", String::from_utf8_lossy(&kv.value));
    }
}

pub async fn put(args: PutArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::new(&args.conn)?;
    let request = PutRequest {
        key: args.key.into_bytes().into(),
        value: args.value.into_bytes().into(),
        lease: args.lease.unwrap_or(0),
        prev_kv: args.prev_kv,
        ..Default::default()
    };
    let response = cluster
        .call("put", |channel| {
            let request = request.clone();
            async move { KvClient::new(channel).put(request).await }
        })
        .await?
        .into_inner();
    println!("OK");
    if let Some(prev) = response.prev_kv {
        print_kv(&prev, true, true);
    }
    Ok(())
}

pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::new(&args.conn)?;
    let (key, range_end) = args.range.bounds();
    let request = RangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        limit: args.limit,
        revision: args.rev,
        sort_order: SortOrder::None as i32,
        sort_target: SortTarget::Key as i32,
        serializable: args.serializable,
        keys_only: args.keys_only,
        ..Default::default()
    };
    let response = cluster
        .call("get", |channel| {
            let request = request.clone();
            async move {
                KvClient::new(channel)
                    .max_decoding_message_size(super::REPLY_BYTES_MAX)
                    .range(request)
                    .await
            }
        })
        .await?
        .into_inner();
    for kv in &response.kvs {
        print_kv(kv, !args.print_value_only, !args.keys_only);
    }
    Ok(())
}

pub async fn del(args: DelArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::new(&args.conn)?;
    let (key, range_end) = args.range.bounds();
    let request = DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        prev_kv: args.prev_kv,
    };
    let response = cluster
        .call("del", |channel| {
            let request = request.clone();
            async move { KvClient::new(channel).delete_range(request).await }
        })
        .await?
        .into_inner();
    println!("{}", response.deleted);
    for kv in &response.prev_kvs {
        print_kv(kv, true, true);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"a"), b"b");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
