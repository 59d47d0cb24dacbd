//! Asking one member how it is: Maintenance/Status over gRPC, plus its
//! `/metrics` for what the etcd API does not carry (role, log size).

use std::time::Duration;

use keel::tls::ClientTls;
use keel_kv::proto::etcdserverpb::cluster_client::ClusterClient;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_kv::proto::etcdserverpb::{MemberListRequest, StatusRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;

use super::state::MemberEntry;

/// A member's answers, as far as it gave them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberView {
    pub id: u64,
    /// 0 when the member knows no leader.
    pub leader: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub db_size_bytes: i64,
    pub is_learner: bool,
    /// From `/metrics`; `None` when the side-car did not answer.
    pub role: Option<String>,
    pub log_entries: Option<u64>,
}

/// A channel to a member's client URL; `tls` for an `https://` one.
async fn connect(url: &str, tls: Option<&ClientTls>, timeout: Duration) -> Result<Channel, String> {
    let endpoint = ClientTls::endpoint(url)
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout)
        .timeout(timeout);
    match tls {
        Some(tls) => tls.connect(endpoint).await,
        None => endpoint.connect().await,
    }
    .map_err(|_| "unreachable".to_string())
}

/// The names in a member's member list; a member appears there without a
/// name until it has started and published itself.
pub async fn member_names(
    url: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let channel = connect(url, tls, timeout).await?;
    let members = ClusterClient::new(channel)
        .member_list(MemberListRequest {
            linearizable: false,
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner()
        .members;
    Ok(members.into_iter().map(|m| m.name).collect())
}

/// Maintenance/Status, or why it failed.
async fn grpc_status(
    url: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<MemberView, String> {
    let channel = connect(url, tls, timeout).await?;
    let status = MaintenanceClient::new(channel)
        .status(StatusRequest {})
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    Ok(MemberView {
        id: status.header.map_or(0, |h| h.member_id),
        leader: status.leader,
        term: status.raft_term,
        commit_index: status.raft_index,
        applied_index: status.raft_applied_index,
        db_size_bytes: status.db_size,
        is_learner: status.is_learner,
        role: None,
        log_entries: None,
    })
}

/// `GET /metrics` over HTTP/1.0, which needs no HTTP client library: the
/// server answers with a plain body and closes.
pub async fn fetch_metrics(url: &str, timeout: Duration) -> Option<String> {
    let authority = url.trim_start_matches("http://");
    let fetch = async {
        let mut stream = TcpStream::connect(authority).await.ok()?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {authority}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let ok = head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200");
        ok.then(|| body.to_string())
    };
    tokio::time::timeout(timeout, fetch).await.ok().flatten()
}

/// The value of a series line `name value` (or `name{labels} value`, given
/// the full `name{labels}`).
pub fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

/// The role whose `keel_raft_role` series is 1.
fn role(text: &str) -> Option<String> {
    [
        "leader",
        "follower",
        "candidate",
        "pre-candidate",
        "learner",
    ]
    .into_iter()
    .find(|role| series(text, &format!("keel_raft_role{{role=\"{role}\"}}")) == Some(1.0))
    .map(str::to_string)
}

/// Asks `member` (over `tls` when the cluster has TLS); `Err` says why it
/// could not answer.
pub async fn probe(
    member: &MemberEntry,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<MemberView, String> {
    let (status, metrics) = tokio::join!(
        grpc_status(&member.client_url, tls, timeout),
        fetch_metrics(&member.metrics_url, timeout)
    );
    let mut view = status?;
    if let Some(text) = metrics {
        view.role = role(&text);
        view.log_entries = series(&text, "keel_raft_log_entries").map(|v| v as u64);
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_values_are_read_by_exact_name() {
        let text = "# HELP x\nkeel_raft_log_entries 12\nkeel_raft_log_entries_x 9\n\
                    keel_raft_role{role=\"follower\"} 0\nkeel_raft_role{role=\"leader\"} 1\n";
        assert_eq!(series(text, "keel_raft_log_entries"), Some(12.0));
        assert_eq!(role(text).as_deref(), Some("leader"));
        assert_eq!(series(text, "keel_raft_term"), None);
    }
}
