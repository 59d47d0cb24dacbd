//! Generated protobuf and gRPC code: etcd's v3 API and Keel's command envelope.

#![allow(clippy::all, missing_docs)]

/// etcd's data model: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// etcd's auth data model: `User`, `Role`, `Permission`.
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// etcd's v3 RPC messages and services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// etcd's Lock service.
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// etcd's Election service.
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// Keel's own messages, nested as their proto package so that generated
/// paths to `etcdserverpb` resolve.
pub mod keel {
    pub mod kv {
        pub mod v1 {
            tonic::include_proto!("keel.kv.v1");
        }
    }
}

/// Keel's replicated commands and apply results.
pub use keel::kv::v1 as command;
