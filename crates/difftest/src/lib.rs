//! Differential testing of Keel KV against etcd.
//!
//! A seeded [`generate::Generator`] makes etcd v3 requests, valid and
//! invalid; [`run::run`] sends each one to a single-member etcd and to a
//! Keel cluster, and compares the replies field by field once
//! [`reply::Reply::normalized`] took out what legitimately differs. Every
//! difference is a [`run::Divergence`]; those Keel keeps on purpose are
//! recognised by [`intentional::intentional`] and documented in
//! docs/etcd-compatibility.md. [`process`] starts both systems.

pub mod generate;
pub mod intentional;
pub mod op;
pub mod process;
pub mod reply;
pub mod run;
pub mod target;
