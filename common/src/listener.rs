//! The one listener of every service: plain TCP, or TLS over it, behind
//! axum's `Listener`. Each connection comes with its [`Peer`]: its address
//! and, over mutual TLS, the role its client certificate names. Handlers
//! read it as `ConnectInfo<Peer>`.
//!
//! TLS handshakes run on tasks of their own, bounded by
//! [`HANDSHAKE_TIMEOUT`]: a client that never finishes its handshake holds
//! up no one else's connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The connection is TLS.
    pub tls: bool,
    /// It presented a client certificate the CA signed.
    pub certified: bool,
    /// The role that certificate names (see [`crate::tls::role_of`]).
    pub role: Option<&'static str>,
}

impl Peer {
    pub fn plain(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            tls: false,
            certified: false,
            role: None,
        }
    }
}

/// A connection, plain or TLS.
pub enum ServiceIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ServiceIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServiceIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServiceIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServiceIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServiceIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServiceIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServiceIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ServiceIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServiceIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServiceIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServiceIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ServiceIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServiceIo::Plain(s) => s.is_write_vectored(),
            ServiceIo::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Connections ready for the server, accepted (and shaken hands with) by
/// a task of their own.
pub struct ServiceListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(ServiceIo, Peer)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for ServiceListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl ServiceListener {
    pub fn new(tcp: TcpListener, tls: Option<Arc<ServerConfig>>) -> io::Result<ServiceListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(256);
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors, most likely: wait, as
                        // axum's own listener does.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Some(acceptor) = acceptor.clone() else {
                    if tx
                        .send((ServiceIo::Plain(stream), Peer::plain(addr)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let shake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    let tls = match shake.await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(peer = %addr, "TLS handshake timed out");
                            return;
                        }
                    };
                    let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                    let peer = Peer {
                        addr,
                        tls: true,
                        certified: cert.is_some(),
                        role: cert.and_then(crate::tls::role_of),
                    };
                    let _ = tx.send((ServiceIo::Tls(Box::new(tls)), peer)).await;
                });
            }
        });
        Ok(ServiceListener {
            local,
            ready,
            accepting,
        })
    }
}

impl axum::serve::Listener for ServiceListener {
    type Io = ServiceIo;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task ended (it only does when aborted): no
            // connection will come again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Peer::plain(self.local))
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, ServiceListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, ServiceListener>) -> Self {
        stream.remote_addr().clone()
    }
}
