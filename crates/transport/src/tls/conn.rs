//! A connection accepted by [`super::incoming`], and what tonic records
//! of it for each request ([`ConnInfo`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::names::subject_common_names;

/// A connection accepted by [`super::incoming`]: plain TCP, or TLS over TCP once
/// its handshake completed.
pub enum Conn {
    /// A plain TCP connection (the listener has no TLS).
    Plain(TcpStream),
    /// A TLS connection whose handshake completed.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What tonic puts in the extensions of every request that arrives on a
/// [`Conn`]: the TCP addresses, and the subject common name of the client
/// certificate the handshake verified, if any. An application may take
/// that name as the caller's identity (etcd's `--client-cert-auth` users):
/// it is only ever set from a certificate that chains to the listener's
/// trusted CAs, since a listener that does not require client
/// certificates never asks for one.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The local and remote TCP addresses.
    pub tcp: TcpConnectInfo,
    /// The subject common name of the verified client certificate (the last
    /// one if it has several); `None` on plain TCP, without a client
    /// certificate, or if its subject has no common name.
    pub client_common_name: Option<String>,
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        match self {
            Conn::Plain(s) => ConnInfo {
                tcp: s.connect_info(),
                client_common_name: None,
            },
            Conn::Tls(s) => {
                let (tcp, session) = s.get_ref();
                // The leaf comes first. Of several common names, the last
                // counts, as Go's `pkix.Name` (etcd) reads a subject.
                let client_common_name = session
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| subject_common_names(leaf).pop());
                ConnInfo {
                    tcp: tcp.connect_info(),
                    client_common_name,
                }
            }
        }
    }
}
