//! A client-side answer deadline for PostgreSQL connections. The driver has a connect timeout
//! but no statement timeout of its own, and a server-side `statement_timeout` is no help when
//! the server does not run at all (frozen, partitioned, failing over): a query on a pooled
//! connection would wait for as long as the server is gone, and the request with it.
//!
//! Each connection's socket is wrapped in [`Deadline`]: once the client has sent something, the
//! server must send some bytes back within the timeout, or the socket fails with `TimedOut`.
//! The driver then ends the connection, every query waiting on it returns an error (a `503`
//! with `Retry-After` at the edge, a retry with back-off in the worker), and the pool opens a
//! new connection for the next caller. An idle connection has nothing outstanding and is never
//! timed out.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use deadpool_postgres::Connect;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

/// `BoxFuture` as `deadpool_postgres::Connect` spells it.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stream whose peer must answer within `timeout` of being sent something.
pub struct Deadline<S> {
    inner: S,
    timeout: Duration,
    /// Running while an answer is owed: armed by a write, disarmed by any bytes read.
    sleep: Pin<Box<Sleep>>,
    armed: bool,
    /// Who waits for the answer: the driver's connection task polls its read before it
    /// writes a request, so the deadline armed by the write must wake the read.
    reader: Option<Waker>,
}

impl<S> Deadline<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Deadline {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
            reader: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.armed = false;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.armed && self.sleep.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the database did not answer within {} ms",
                        self.timeout.as_millis()
                    ),
                )))
            }
            Poll::Pending => {
                self.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<S> Deadline<S> {
    /// After a write that sent something: an answer is owed within the timeout.
    fn arm_after(&mut self, written: &Poll<io::Result<usize>>, cx: &Context<'_>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) && !self.armed {
            self.armed = true;
            let at = Instant::now() + self.timeout;
            self.sleep.as_mut().reset(at);
            // Registers the timer now, to wake whoever reads (or, before any read, this task):
            // a read already pending is not polled again until something wakes it.
            let waker = self.reader.clone().unwrap_or_else(|| cx.waker().clone());
            let _ = self.sleep.as_mut().poll(&mut Context::from_waker(&waker));
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        self.arm_after(&written, cx);
        written
    }

    /// Passed on, so that TLS writes its queued records in one system call, not one each.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.arm_after(&written, cx);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Opens the pool's connections over [`Deadline`] sockets.
pub struct DeadlineConnect {
    pub tls: MakeRustlsConnect,
    pub timeout: Duration,
}

impl Connect for DeadlineConnect {
    fn connect(
        &self,
        config: &Config,
    ) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        let config = config.clone();
        Box::pin(async move {
            match self.connect_with_deadline(&config).await {
                Some(Ok((client, task))) => Ok((client, task)),
                // The driver's own attempt, for what this one does not handle (a Unix socket)
                // or to report a failure as the driver's error type (whose constructors are
                // private): with the same connect timeout, it fails the same way.
                Some(Err(())) | None => {
                    let (client, connection) = config.connect(self.tls.clone()).await?;
                    Ok((client, spawn_connection(connection)))
                }
            }
        })
    }
}

impl DeadlineConnect {
    /// `None` when the configuration names no TCP host; `Err` when no host could be reached.
    async fn connect_with_deadline(
        &self,
        config: &Config,
    ) -> Option<Result<(Client, JoinHandle<()>), ()>> {
        let hosts = config.get_hosts();
        let ports = config.get_ports();
        let mut tried = false;
        for (i, host) in hosts.iter().enumerate() {
            let Host::Tcp(host) = host else { continue };
            tried = true;
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let connect =
                tokio::time::timeout(self.timeout, TcpStream::connect((host.as_str(), port)));
            let Ok(Ok(socket)) = connect.await else {
                continue;
            };
            let _ = socket.set_nodelay(true);
            let mut tls = self.tls.clone();
            let Ok(tls) = MakeTlsConnect::<Deadline<TcpStream>>::make_tls_connect(&mut tls, host)
            else {
                return Some(Err(()));
            };
            let stream = Deadline::new(socket, self.timeout);
            let startup = tokio::time::timeout(self.timeout, config.connect_raw(stream, tls));
            if let Ok(Ok((client, connection))) = startup.await {
                return Some(Ok((client, spawn_connection(connection))));
            }
        }
        tried.then_some(Err(()))
    }
}

fn spawn_connection<F>(connection: F) -> JoinHandle<()>
where
    F: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "database connection ended");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_silent_peer_fails_the_read_an_idle_one_does_not() {
        let deadline = Duration::from_millis(200);
        let (client, mut server) = tokio::io::duplex(1024);
        let mut client = Deadline::new(client, deadline);
        let mut buf = [0u8; 16];

        // Idle (nothing sent): no deadline, however long.
        let idle = tokio::time::timeout(deadline * 3, client.read(&mut buf)).await;
        assert!(idle.is_err(), "an idle read only waits");

        // Asked and answered: fine, and the deadline is off again.
        client.write_all(b"SELECT 1").await.unwrap();
        server.read_exact(&mut [0u8; 8]).await.unwrap();
        server.write_all(b"row").await.unwrap();
        assert_eq!(client.read(&mut buf).await.unwrap(), 3);
        let idle = tokio::time::timeout(deadline * 3, client.read(&mut buf)).await;
        assert!(idle.is_err(), "answered, then idle: no deadline");

        // Asked and never answered: TimedOut, and not before the deadline.
        client.write_all(b"SELECT 2").await.unwrap();
        let started = Instant::now();
        let err = client.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            err.to_string().contains("did not answer within 200 ms"),
            "{err}"
        );
        assert!(started.elapsed() >= deadline);
    }

    /// TLS writes its records with one vectored write: that arms the deadline too.
    #[tokio::test]
    async fn a_vectored_write_owes_an_answer_too() {
        let deadline = Duration::from_millis(100);
        let (client, mut server) = tokio::io::duplex(1024);
        let mut client = Deadline::new(client, deadline);
        let parts = [io::IoSlice::new(b"SELECT"), io::IoSlice::new(b" 4")];
        let sent = client.write_vectored(&parts).await.unwrap();
        assert!(sent > 0);
        server.read_exact(&mut vec![0u8; sent]).await.unwrap();
        let err = client.read(&mut [0u8; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    /// As the driver's connection task does: the read is pending before the request is
    /// written, and nothing polls it again but the deadline.
    #[tokio::test]
    async fn a_read_pending_before_the_request_is_woken_by_the_deadline() {
        let deadline = Duration::from_millis(200);
        let (client, _server) = tokio::io::duplex(1024);
        let (mut reader, mut writer) = tokio::io::split(Deadline::new(client, deadline));
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            reader.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.write_all(b"SELECT 3").await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("the deadline wakes the pending read")
            .unwrap();
        assert_eq!(answer.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }
}
