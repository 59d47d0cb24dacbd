//! One TCP proxy per directed link between two nodes, so that a test can
//! cut a node off from the others over real sockets: node `a` is given
//! the address of the proxy `a → b` as `b`'s address, and each node sends
//! its messages (answers included) on its own connections.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A proxy for one direction of one link.
pub struct LinkProxy {
    pub addr: String,
    cut: Arc<watch::Sender<bool>>,
    accept: JoinHandle<()>,
}

impl LinkProxy {
    /// Forwards connections made to [`LinkProxy::addr`] to `upstream`.
    pub async fn start(upstream: String) -> LinkProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(watch::channel(false).0);
        let accept = tokio::spawn(forward(listener, upstream, cut.clone()));
        LinkProxy { addr, cut, accept }
    }

    /// Closes every connection through the link and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

async fn forward(listener: TcpListener, upstream: String, cut: Arc<watch::Sender<bool>>) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        if *cut.borrow() {
            continue; // dropping the socket closes it
        }
        let mut cut = cut.subscribe();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut.wait_for(|&cut| cut) => {}
            }
        });
    }
}
