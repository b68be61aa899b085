//! The gRPC listener's connections, at most `server.max_connections` at once: a connection
//! holds a permit until it closes, and the next is accepted only when one is free (the rest
//! wait in the kernel's backlog, as the HTTP listener's do). A connection that moves no byte
//! either way for the idle timeout is closed, so idle sockets cannot hold every permit. With
//! `server.tls`, each connection's handshake runs in a task of its own, within
//! [`HANDSHAKE_TIMEOUT`], so a slow client never holds the accept loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The longest a TLS handshake may take; a client still shaking hands then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection's bytes: in the clear, or inside TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection, its permit and its idle deadline.
pub struct Limited {
    stream: Conn,
    info: TcpConnectInfo,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Limited {
    fn new(
        stream: Conn,
        info: TcpConnectInfo,
        permit: OwnedSemaphorePermit,
        idle: Duration,
    ) -> Self {
        Self {
            stream,
            info,
            _permit: permit,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// Moves the idle deadline on after bytes moved.
    fn moved(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// The error that closes a connection idle past its deadline, once it is.
    fn idle_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        self.deadline.as_mut().poll(cx).map(|()| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "idle past server.grpc_idle_timeout_seconds",
            )
        })
    }
}

/// Accepted connections, `max` at once; inside TLS with `tls` (its ALPN offers `h2`).
/// Must be called on the runtime that serves them: the accept loop is a task of its own.
pub fn limited(
    listener: TcpListener,
    max: usize,
    idle: Duration,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> impl Stream<Item = Result<Limited, std::io::Error>> {
    let permits = Arc::new(Semaphore::new(max.max(1)));
    // Bounded by the permits: a connection is sent only while it holds one.
    let (ready, connections) = mpsc::unbounded_channel::<Limited>();
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::spawn(async move {
        // Until the server stops taking connections (it drops their stream): then the
        // listener closes at once, not at the next connection.
        loop {
            let permit = tokio::select! {
                _ = ready.closed() => return,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let stream = loop {
                tokio::select! {
                    _ = ready.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => break stream,
                        // Out of file descriptors, a connection reset before accept: wait, go on.
                        Err(e) => {
                            tracing::debug!("gRPC accept: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    },
                }
            };
            let _ = stream.set_nodelay(true);
            let info = stream.connect_info();
            match &acceptor {
                None => {
                    let _ = ready.send(Limited::new(Conn::Plain(stream), info, permit, idle));
                }
                Some(acceptor) => {
                    let (acceptor, ready) = (acceptor.clone(), ready.clone());
                    tokio::spawn(async move {
                        let shake =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                        match shake.await {
                            Ok(Ok(tls)) => {
                                let conn = Conn::Tls(Box::new(tls));
                                let _ = ready.send(Limited::new(conn, info, permit, idle));
                            }
                            Ok(Err(e)) => tracing::debug!("gRPC TLS handshake: {e}"),
                            Err(_) => tracing::debug!("gRPC TLS handshake: timed out"),
                        }
                    });
                }
            }
        }
    });
    futures_util::stream::unfold(connections, |mut connections| async move {
        let conn = connections.recv().await?;
        Some((Ok(conn), connections))
    })
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match self.stream.pinned().poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.idle_out(cx).map(Err),
        }
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = self.stream.pinned().poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream.pinned().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream.pinned().poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = self.stream.pinned().poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Both kinds of connection as one reader and writer.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Conn {
    fn pinned(&mut self) -> Pin<&mut dyn Io> {
        match self {
            Conn::Plain(s) => Pin::new(s),
            Conn::Tls(s) => Pin::new(&mut **s),
        }
    }
}
