//! One Keel KV member inside the test process: `LocalConsensus` in place
//! of Raft, served on 127.0.0.1 by the client port's own serving code
//! (`keel_kv::server::serve`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use keel_kv::proto::etcdserverpb::Member;
use keel_kv::service::{ServiceConfig, Shared};
use keel_kv::{KvStateMachine, LocalConsensus};
use tokio::net::TcpListener;

/// The cluster ID every response header of the member carries.
pub const CLUSTER_ID: u64 = 77;
/// The member's own ID.
pub const MEMBER_ID: u64 = 5;

/// Starts the member on a store in `dir`, with `config`; its address.
pub async fn start(dir: &Path, config: ServiceConfig) -> SocketAddr {
    let sm = KvStateMachine::open(dir, true).unwrap();
    let consensus = Arc::new(LocalConsensus::new(sm.clone(), CLUSTER_ID, MEMBER_ID));
    let shared = Shared::new(sm, consensus, config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let me = Member {
        id: MEMBER_ID,
        name: "solo".into(),
        peer_ur_ls: vec!["http://127.0.0.1:1".into()],
        client_ur_ls: vec![format!("http://{addr}")],
        is_learner: false,
    };
    tokio::spawn(keel_kv::server::serve(
        shared,
        listener,
        me,
        std::future::pending(),
    ));
    addr
}
