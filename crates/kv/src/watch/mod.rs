//! Watches: the hub that applied events flow into, and the per-watcher
//! tasks that deliver them in revision order, exactly once.

mod hub;
mod watcher;

pub use hub::WatchHub;
pub use watcher::{WatchReply, WatchSpec, Watcher, WatcherEnd};
