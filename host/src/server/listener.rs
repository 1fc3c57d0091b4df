//! Accepting connections with bounds a hostile client cannot outlast: at
//! most `max_connections` at once and `max_per_peer` from one address, a
//! deadline on each request's headers (which is also how long a kept-alive
//! connection may sit idle), a deadline on every write of an answer (a
//! client that stops reading is cut off), a lifetime after which a
//! connection finishes its request and closes, and a bounded drain when
//! the server stops.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Connections open at once; beyond, new ones wait in the kernel's
    /// backlog.
    pub(crate) max_connections: usize,
    /// Connections open at once from one address; beyond, a new one is
    /// closed at once.
    pub(crate) max_per_peer: usize,
    /// Time to send a request's headers, idle keep-alive time included.
    pub(crate) header_timeout: Duration,
    /// Time a write of an answer may wait for the client to read.
    pub(crate) write_timeout: Duration,
    /// After this, a connection finishes the request it is on and closes.
    pub(crate) lifetime: Duration,
    /// How long connections may take to finish once the port has closed.
    pub(crate) drain_timeout: Duration,
}

/// Serves `router` on `listener` until `stop` turns true, then closes the
/// port and lets the connections finish, for at most the drain timeout.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
    limits: ConnectionLimits,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let peers = Arc::new(Peers::default());
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.expect("never closed"),
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, peer.ip()),
                Err(error) => {
                    // Out of file descriptors, typically: wait, do not spin.
                    tracing::warn!(error = %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let Some(from_peer) = peers.clone().admit(peer, limits.max_per_peer) else {
            // One address cannot hold every connection: a 503 the client
            // can retry on, and the connection closed.
            tokio::spawn(turn_away(stream));
            continue;
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(
                TokioIo::new(WriteDeadline::new(stream, limits.write_timeout)),
                TowerToHyperService::new(WithPeer {
                    router: router.clone(),
                    peer,
                }),
            );
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _open = (permit, from_peer);
            let mut connection = std::pin::pin!(connection);
            let stopping = tokio::select! {
                _ = connection.as_mut() => return,
                () = stopped(&mut stop) => true,
                () = tokio::time::sleep(limits.lifetime) => false,
            };
            // Finish the request in hand (or none), then close: at the end
            // of its lifetime within the request's own deadlines, at a stop
            // within the drain.
            connection.as_mut().graceful_shutdown();
            if stopping {
                let _ = tokio::time::timeout(limits.drain_timeout, connection).await;
            } else {
                let _ = connection.await;
            }
        });
    }
    drop(listener);
    let all = limits.max_connections as u32;
    if tokio::time::timeout(limits.drain_timeout, open.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            drain_ms = limits.drain_timeout.as_millis() as u64,
            "connections still open after the drain timeout are closed"
        );
    }
}

/// Answers a connection over its address's share with a 503 and closes it;
/// a client that does not take the answer within a second is just closed.
async fn turn_away(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
        Content-Type: application/json\r\nContent-Length: 63\r\nConnection: close\r\n\r\n\
        {\"error\":\"too many connections from this address; retry later\"}";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(ANSWER)).await;
    let _ = stream.shutdown().await;
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await.map(|_| ());
}

/// The address a request came from, in its extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) IpAddr);

/// The router, with each request's [`Peer`] put in its extensions.
#[derive(Clone)]
struct WithPeer {
    router: Router,
    peer: IpAddr,
}

impl<B> tower::Service<axum::http::Request<B>> for WithPeer
where
    Router: tower::Service<axum::http::Request<B>>,
{
    type Response = <Router as tower::Service<axum::http::Request<B>>>::Response;
    type Error = <Router as tower::Service<axum::http::Request<B>>>::Error;
    type Future = <Router as tower::Service<axum::http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<axum::http::Request<B>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(Peer(self.peer));
        self.router.call(request)
    }
}

/// Things open per address (connections, webhook bodies being read).
#[derive(Default)]
pub(crate) struct Peers(Mutex<HashMap<IpAddr, usize>>);

/// One thing counted against its address until dropped.
pub(crate) struct FromPeer {
    peers: Arc<Peers>,
    peer: IpAddr,
}

impl Peers {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one more from `peer`, unless it has `max` open. An IPv6
    /// address counts with its /64 (one host's usual share).
    pub(crate) fn admit(self: Arc<Self>, peer: IpAddr, max: usize) -> Option<FromPeer> {
        let peer = match peer {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
            v4 => v4,
        };
        let mut open = self.open();
        let count = open.entry(peer).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        drop(open);
        Some(FromPeer { peers: self, peer })
    }
}

impl Drop for FromPeer {
    fn drop(&mut self) {
        let mut open = self.peers.open();
        if let Some(count) = open.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

/// A stream whose writes fail once one has waited `limit` for the client
/// to take the bytes: hyper has no write timeout of its own.
struct WriteDeadline<S = TcpStream> {
    stream: S,
    limit: Duration,
    /// Armed while a write waits.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(stream: S, limit: Duration) -> WriteDeadline<S> {
        WriteDeadline {
            stream,
            limit,
            waiting: None,
        }
    }

    /// `result` of a write or flush, failing it when it has waited too long.
    fn within<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if result.is_ready() {
            self.waiting = None;
            return result;
        }
        let limit = self.limit;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading the answer",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.within(cx, result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.stream).poll_flush(cx);
        self.within(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.within(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off() {
        use tokio::io::AsyncWriteExt;
        // A client whose receive buffer (64 bytes) is full and who never
        // reads it.
        let (server_side, _client) = tokio::io::duplex(64);
        let mut stream = WriteDeadline::new(server_side, Duration::from_millis(50));
        let started = std::time::Instant::now();
        let error = stream.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn one_address_holds_at_most_its_share() {
        let peers = Arc::new(Peers::default());
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<FromPeer> = (0..3)
            .map(|_| peers.clone().admit(one, 3).unwrap())
            .collect();
        assert!(peers.clone().admit(one, 3).is_none());
        assert!(peers.clone().admit(other, 3).is_some());
        drop(held);
        assert!(peers.clone().admit(one, 3).is_some());
        assert!(peers.open().is_empty(), "closed connections are forgotten");
        // One /64 is one peer.
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let _first = peers.clone().admit(a, 1).unwrap();
        assert!(peers.clone().admit(b, 1).is_none());
    }
}
