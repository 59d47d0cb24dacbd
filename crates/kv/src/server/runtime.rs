//! The tokio runtime a member runs on.

/// A multi-threaded runtime (workers: `TOKIO_WORKER_THREADS`, or one per
/// core) with the scheduler's LIFO slot turned off.
///
/// With the slot on, a task woken by the task running on a worker runs
/// next, ahead of everything queued. When an apply batch answers many
/// requests at once, each request's task completes its response and wakes
/// its HTTP/2 connection's task, which then ran at once and wrote that
/// one response to the socket: one `writev` per response. With the slot
/// off, the connection's task queues behind the other finished requests
/// and writes them all in one go. Measured on `keel cluster up`, 100
/// clients: `writev` calls per put at the leader 1.25 → 0.38, server CPU
/// per put 76–77 → 66–67 µs (BENCHMARKS.md).
///
/// Turning the slot off is an unstable tokio API: the workspace builds
/// with `--cfg tokio_unstable` (`.cargo/config.toml`). A build without
/// that flag (a `RUSTFLAGS` of one's own replaces the config's) still
/// works, with the slot on.
pub fn member_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder.build()
}
