//! `etcdserverpb.Maintenance`: status, hashes, alarms, defragment,
//! snapshot download and leader transfer.

use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Credentials, Shared, mismatch, validate};
use crate::backup::{BLOCK_BYTES, SHA256_BYTES};
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::mvcc::IN_USE_MAX_AGE;
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse, HashKvRequest,
    HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse,
    SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};

/// The etcd release whose API Keel implements, reported where etcd
/// reports its server version (Status, `endpoint status`, `/version`):
/// clients that gate features on the server's version must see the
/// release Keel is checked against (`keel-difftest` runs against etcd
/// 3.4.23), not a version Keel has no release of its own to match.
/// `docs/etcd-compatibility.md` says what this promises.
pub const API_VERSION: &str = "3.4.23";
/// The cluster version etcd 3.4 reports beside it (major.minor.0).
pub const CLUSTER_VERSION: &str = "3.4.0";
/// Snapshot download chunk size.
const SNAPSHOT_CHUNK_BYTES: usize = 64 * 1024;

/// Refuses a Defragment, Hash, HashKV or Snapshot call unless auth is off
/// or its caller has the root role, with etcd 3.4's answer: these calls
/// return its auth store's own error untranslated, so a client sees gRPC
/// `Unknown` with `auth: user name is empty` or `auth: permission denied`
/// where every other call gets `InvalidArgument` or `PermissionDenied`
/// with `etcdserver: …`. Other refusals (a bad token) keep their usual
/// answer, which tells clients to authenticate again.
async fn admit_admin_as_etcd<C: Consensus, T>(
    shared: &Shared<C>,
    request: &Request<T>,
) -> Result<(), Status> {
    match shared.admit_admin(&Credentials::of(request)).await {
        Ok(()) => Ok(()),
        Err(KvError::UserEmpty) => Err(Status::unknown("auth: user name is empty")),
        Err(KvError::PermissionDenied) => Err(Status::unknown("auth: permission denied")),
        Err(other) => Err(other.into()),
    }
}

pub struct MaintenanceService<C> {
    shared: Arc<Shared<C>>,
}

impl<C> MaintenanceService<C> {
    pub fn new(shared: Arc<Shared<C>>) -> Self {
        MaintenanceService { shared }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<C: Consensus> Maintenance for MaintenanceService<C> {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        // etcd checks no permission on Alarm, but a token that is sent
        // must be valid.
        let caller = self.shared.caller(&Credentials::of(&request)).await?;
        let req = request.into_inner();
        if req.action == AlarmAction::Get as i32 {
            // etcd answers a listing through the log; a read barrier gives
            // the same linearizable view without an entry.
            validate::op(&Op::Alarm(req))?;
            self.shared.consensus.read_barrier().await?;
            let revision = self.shared.sm.store().position().revision;
            return Ok(Response::new(AlarmResponse {
                header: Some(self.shared.header(revision)),
                alarms: self.shared.sm.store().alarm_members(req.alarm),
            }));
        }
        let (_, outcome) = self.shared.propose_checked(&caller, Op::Alarm(req)).await?;
        let Outcome::Alarm(mut resp) = outcome else {
            return Err(mismatch("alarm response").into());
        };
        resp.header = self.shared.fill(resp.header);
        Ok(Response::new(resp))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let info = self.shared.consensus.info();
        let position = self.shared.sm.store().position();
        // Counting the pages in use blocks apply for as long as it walks the
        // database: report the last count and refresh it in the background.
        let usage = self.shared.sm.store().usage_last_counted();
        if self.shared.sm.store().claim_usage_count(IN_USE_MAX_AGE) {
            let sm = self.shared.sm.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = sm.store().usage() {
                    tracing::warn!(error = %e, "counting the kv store's pages in use failed");
                }
            });
        }
        // etcd lists the active alarms as the status's errors.
        let errors = self
            .shared
            .sm
            .store()
            .alarm_members(AlarmType::None as i32)
            .into_iter()
            .map(|a| {
                let name = AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
                format!("memberID:{} alarm:{} ", a.member_id, name)
            })
            .collect();
        Ok(Response::new(StatusResponse {
            header: Some(self.shared.header(position.revision)),
            version: API_VERSION.into(),
            db_size: usage.size_bytes,
            leader: info.leader_id.unwrap_or(0),
            raft_index: info.commit_index,
            raft_term: info.term,
            raft_applied_index: info.applied_index,
            errors,
            db_size_in_use: usage.in_use_bytes,
            is_learner: info.is_learner(),
        }))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        admit_admin_as_etcd(&self.shared, &request).await?;
        // Pauses this member's apply while redb rewrites its file; other
        // members go on (etcd defragments one member per call too).
        let sm = self.shared.sm.clone();
        tokio::task::spawn_blocking(move || sm.store().defragment())
            .await
            .map_err(|_| KvError::Stopped)??;
        let revision = self.shared.sm.store().position().revision;
        Ok(Response::new(DefragmentResponse {
            header: Some(self.shared.header(revision)),
        }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        admit_admin_as_etcd(&self.shared, &request).await?;
        let (hash, _, revision) = self.shared.read_store(|store| store.hash_kv(0)).await?;
        Ok(Response::new(HashResponse {
            header: Some(self.shared.header(revision)),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        admit_admin_as_etcd(&self.shared, &request).await?;
        let req = request.into_inner();
        let (hash, compact_revision, _) = self
            .shared
            .read_store(move |store| store.hash_kv(req.revision))
            .await?;
        let revision = self.shared.sm.store().position().revision;
        Ok(Response::new(HashKvResponse {
            header: Some(self.shared.header(revision)),
            hash,
            compact_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        admit_admin_as_etcd(&self.shared, &request).await?;
        // Staged in a file so that the stream can say how many bytes remain
        // without holding the state in memory.
        let mut file =
            tempfile::tempfile_in(&self.shared.config.scratch_dir).map_err(KvError::from)?;
        let sm = self.shared.sm.clone();
        let (file, position) = tokio::task::spawn_blocking(move || {
            let mut writer = std::io::BufWriter::new(&mut file);
            let position = sm.write_snapshot(&mut writer)?;
            drop(writer);
            Ok::<_, KvError>((file, position))
        })
        .await
        .map_err(|_| KvError::Stopped)??;
        let header = self.shared.header(position.revision);
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = stream_file(file, header, &tx) {
                let _ = tx.blocking_send(Err(e.into()));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.shared.admit_admin(&Credentials::of(&request)).await?;
        let target = request.into_inner().target_id;
        self.shared.consensus.transfer_leadership(target).await?;
        let revision = self.shared.sm.store().position().revision;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.shared.header(revision)),
        }))
    }
}

/// Streams the staged snapshot in etcd's download layout (`backup.rs`): the data padded
/// with zeros to a multiple of 512 bytes (the end frame makes the padding
/// invisible to a restore), then the SHA-256 of everything before it.
/// `etcdctl snapshot save` refuses a download whose size is not
/// `512 * n + 32`, which is how it recognizes the trailing checksum.
fn stream_file(
    mut file: std::fs::File,
    header: crate::proto::etcdserverpb::ResponseHeader,
    tx: &mpsc::Sender<Result<SnapshotResponse, Status>>,
) -> Result<(), KvError> {
    let data_bytes = file.seek(SeekFrom::End(0))?;
    let padded_bytes = data_bytes.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
    file.set_len(padded_bytes)?;
    file.seek(SeekFrom::Start(0))?;
    let total = padded_bytes + SHA256_BYTES;
    let mut digest = Sha256::new();
    let mut sent = 0u64;
    let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
    loop {
        let n = file.read(&mut buf)?;
        let blob = if n == 0 {
            bytes::Bytes::copy_from_slice(&std::mem::take(&mut digest).finalize())
        } else {
            digest.update(&buf[..n]);
            bytes::Bytes::copy_from_slice(&buf[..n])
        };
        sent += blob.len() as u64;
        let chunk = SnapshotResponse {
            header: Some(header),
            remaining_bytes: total - sent,
            blob,
        };
        if tx.blocking_send(Ok(chunk)).is_err() || n == 0 {
            return Ok(());
        }
    }
}
