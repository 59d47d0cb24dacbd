//! The client port's connections, with the one request header stock
//! `etcdctl` sends that Keel's HTTP/2 server would refuse repaired: an
//! `:authority` that is a whole URL.
//!
//! etcdctl 3.4 makes its per-endpoint maintenance calls (`endpoint
//! status`, `endpoint hashkv`, `defrag`, `move-leader`) on a connection
//! dialled with the endpoint itself as gRPC's target, so when the endpoint
//! is a URL — and `--cluster` always makes it one — every request on that
//! connection carries `:authority: http://host:port`. Go's HTTP/2 server,
//! etcd's, accepts it. The `h2` crate under tonic resets such a stream as
//! malformed before any handler runs, and has no setting to relax that
//! (hyperium/h2#525). [`AuthorityRepair`] sits between an accepted
//! connection and the HTTP/2 server and rewrites such an authority to the
//! URL's `host:port`, and leaves out one that is not even a URL (etcd's
//! 3.5.0 client sends `#initially=[…]`); [`repair`] holds the rules and
//! the byte-level work. Neither etcd's gRPC server nor Keel reads anything
//! from the authority: what matters is that the request is served, as
//! etcd serves it.
//!
//! Only what the client sends is read; what the server writes passes
//! straight through. A connection that does not start with HTTP/2's
//! preface (HTTP/1.1: `/metrics`, `/health`) is passed through untouched
//! from its first byte.

mod repair;

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use repair::Repair;

/// How much is read from the connection at a time while its frames are
/// being looked at.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// An accepted client connection whose HTTP/2 requests reach the server
/// with a URL-shaped `:authority` repaired; otherwise byte for byte what
/// the client sent.
pub(crate) struct AuthorityRepair<S> {
    inner: S,
    repair: Repair,
    /// The client closed its side: what `repair` still holds is all there
    /// is.
    eof: bool,
}

impl<S> AuthorityRepair<S> {
    pub(crate) fn new(inner: S) -> Self {
        AuthorityRepair {
            inner,
            repair: Repair::default(),
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRepair<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.repair.has_output() {
                this.repair.take_output(buf);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.repair.passes_through() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK_BYTES];
            let mut read = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                this.repair.finish();
            } else {
                this.repair.push(read.filled());
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The request extensions are the wrapped connection's own (its addresses,
/// its verified client certificate).
impl<S: Connected> Connected for AuthorityRepair<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
