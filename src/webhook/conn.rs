//! One connection's lifetime, the way the API server uses connections: keep-alive connections may idle for longer
//! than its transport does (90 s), while a request that has started must still send its headers within the read
//! timeout. hyper's own header timeout also runs while a connection is idle, so it is off and this does both:
//!
//! [`Tracker`] is shared by the connection's IO ([`Timed`]) and its service: the IO notes bytes arriving, the
//! service notes requests starting and ending. While no request is in flight, a connection that has received the
//! first bytes of a request has `header_timeout` to finish its headers (then it is cut off), and an idle one is
//! closed after `idle_timeout`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a connection may wait.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// An idle keep-alive connection is closed after this.
    pub idle: Duration,
    /// A request whose first bytes arrived must have sent all its headers within this.
    pub header: Duration,
}

/// The protocol spoken on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1: bytes arriving while idle start a request.
    Http1,
    /// HTTP/2: bytes arriving while idle may be control frames (pings, settings); only idleness counts.
    Http2,
}

/// What a connection is doing, as its IO and its service see it.
#[derive(Debug)]
pub struct Tracker {
    origin: Instant,
    /// Requests being answered.
    in_flight: AtomicUsize,
    /// Milliseconds since `origin` + 1 when the first bytes of a request arrived while idle; 0 when none did.
    head_since: AtomicU64,
    /// Milliseconds since `origin` of the last activity (bytes read, a request answered).
    last_activity: AtomicU64,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(0),
            last_activity: AtomicU64::new(0),
        }
    }
}

impl Tracker {
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, millis: u64) -> Instant {
        self.origin + Duration::from_millis(millis)
    }

    /// Bytes arrived.
    fn read(&self) {
        let now = self.now();
        self.last_activity.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_since.compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// A request reached the service (its headers are complete).
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
    }

    /// A request was answered.
    pub fn request_finished(&self) {
        self.last_activity.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// What the connection waits for while its IO has nothing to read, and until when.
    fn waiting(&self, protocol: Protocol, timeouts: Timeouts) -> Option<(Wait, Instant)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_since.load(Ordering::Acquire) {
            since if since > 0 && protocol == Protocol::Http1 => {
                Some((Wait::Headers, self.at(since - 1) + timeouts.header))
            }
            _ => Some((Wait::Idle, self.at(self.last_activity.load(Ordering::Relaxed)) + timeouts.idle)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Headers,
    Idle,
}

/// A connection's IO with the timeouts of [`Tracker`]: an idle connection reads as closed (a clean end), one that
/// stalls inside a request's headers fails.
pub struct Timed<T> {
    inner: T,
    tracker: Arc<Tracker>,
    protocol: Protocol,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
}

impl<T> Timed<T> {
    /// Wraps `inner`, reporting to `tracker`.
    pub fn new(inner: T, tracker: Arc<Tracker>, protocol: Protocol, timeouts: Timeouts) -> Self {
        let timer = Box::pin(tokio::time::sleep(timeouts.idle));
        Self { inner, tracker, protocol, timeouts, timer }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Timed<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.tracker.read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some((wait, deadline)) = self.tracker.waiting(self.protocol, self.timeouts) else {
                    return Poll::Pending;
                };
                if self.timer.deadline() != deadline {
                    self.timer.as_mut().reset(deadline);
                }
                match (self.timer.as_mut().poll(cx), wait) {
                    (Poll::Pending, _) => Poll::Pending,
                    // An idle connection ends as if the peer had closed it: hyper closes it cleanly.
                    (Poll::Ready(()), Wait::Idle) => Poll::Ready(Ok(())),
                    (Poll::Ready(()), Wait::Headers) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request headers not received within the read timeout",
                    ))),
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Timed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn timeouts() -> Timeouts {
        Timeouts { idle: Duration::from_secs(120), header: Duration::from_secs(10) }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_stays_open_until_the_idle_timeout_then_ends_cleanly() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = Timed::new(server, Arc::new(Tracker::default()), Protocol::Http1, timeouts());
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            io.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_secs(119)).await;
        assert!(!read.is_finished(), "still open after 119 s idle");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(read.await.expect("task").expect("a clean end"), 0);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_whose_headers_stall_is_cut_off_after_the_header_timeout() {
        let (mut client, server) = tokio::io::duplex(64);
        let tracker = Arc::new(Tracker::default());
        let mut io = Timed::new(server, tracker, Protocol::Http1, timeouts());
        client.write_all(b"POST /mutate HTTP/1.1\r\n").await.expect("write");
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.expect("bytes") > 0);
        let stalled = tokio::spawn(async move { io.read(&mut buf).await });
        tokio::time::sleep(Duration::from_secs(11)).await;
        let err = stalled.await.expect("task").expect_err("timed out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn no_timeout_while_a_request_is_being_answered() {
        let (_client, server) = tokio::io::duplex(64);
        let tracker = Arc::new(Tracker::default());
        tracker.request_started();
        let mut io = Timed::new(server, tracker.clone(), Protocol::Http1, timeouts());
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            io.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!read.is_finished(), "a slow answer is not an idle connection");
        read.abort();
        tracker.request_finished();
    }

    #[tokio::test(start_paused = true)]
    async fn http2_control_frames_do_not_start_a_header_timer() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = Timed::new(server, Arc::new(Tracker::default()), Protocol::Http2, timeouts());
        client.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.expect("bytes") > 0);
        let read = tokio::spawn(async move { io.read(&mut buf).await });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!read.is_finished(), "only the idle timeout applies to HTTP/2");
        read.abort();
    }
}
