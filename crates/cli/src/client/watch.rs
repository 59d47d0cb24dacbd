//! `keel watch`: Watch/Watch on one member, printing each event as etcdctl
//! does (`PUT`, key, value / `DELETE`, key), until Ctrl-C or the server
//! cancels the watch.
//!
//! A watch stays on the member it started on; if that member goes away the
//! command ends with an error rather than silently resuming elsewhere,
//! where it could miss or repeat events.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Args;
use keel_kv::proto::etcdserverpb::watch_client::WatchClient;
use keel_kv::proto::etcdserverpb::watch_request::RequestUnion;
use keel_kv::proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
use keel_kv::proto::mvccpb::event::EventType;
use tokio_stream::StreamExt;

use super::kv::KeyRange;
use super::{Cluster, ConnArgs};

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub range: KeyRange,
    /// Start from this past revision, replaying the history since
    /// (0: only changes from now on).
    #[arg(long, default_value_t = 0, value_name = "REVISION")]
    pub rev: i64,
    /// Also print each changed key's previous value.
    #[arg(long)]
    pub prev_kv: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::new(&args.conn)?;
    let (url, channel) = cluster.any_channel().await?;
    let (key, range_end) = args.range.bounds();
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.into(),
            range_end: range_end.into(),
            start_revision: args.rev,
            prev_kv: args.prev_kv,
            ..Default::default()
        })),
    };
    // The request stream stays open for as long as we watch: closing it
    // would end the watch.
    let (requests, request_stream) = tokio::sync::mpsc::channel(1);
    requests.send(create).await?;
    let mut events = WatchClient::new(channel)
        .max_decoding_message_size(super::REPLY_BYTES_MAX)
        .watch(tokio_stream::wrappers::ReceiverStream::new(request_stream))
        .await
        .with_context(|| format!("cannot watch on {url}"))?
        .into_inner();
    let mut out = std::io::stdout().lock();
    loop {
        let response = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            next = events.next() => match next {
                Some(response) => response.with_context(|| format!("the watch on {url} failed"))?,
                None => bail!("{url} closed the watch"),
            },
        };
        if response.canceled && response.compact_revision != 0 {
            bail!(
                "the watch was canceled: its start revision is compacted (the oldest kept is {}); \
                 watch from a later revision",
                response.compact_revision
            );
        }
        if response.canceled {
            bail!("the watch was canceled: {}", response.cancel_reason);
        }
        for event in response.events {
            let Some(kv) = event.kv else { continue };
            if event.r#type == EventType::Delete as i32 {
                writeln!(out, "DELETE\n{}", String::from_utf8_lossy(&kv.key))?;
            } else {
                writeln!(out, "PUT\n{}", String::from_utf8_lossy(&kv.key))?;
                writeln!(out, "{}", String::from_utf8_lossy(&kv.value))?;
            }
            if let Some(prev) = event.prev_kv {
                writeln!(out, "{}", String::from_utf8_lossy(&prev.value))?;
            }
        }
        // Each event should reach a pipe reader as it happens.
        out.flush()?;
    }
}
