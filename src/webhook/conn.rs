//! One connection's lifetime, the way the API server uses connections: keep-alive connections may idle for longer
//! than its transport does (90 s), while a request that has started must still send its headers within the read
//! timeout. hyper's own header timeout also runs while a connection is idle, so it is off and this does all of it:
//!
//! [`Tracker`] is shared by the connection's IO ([`Timed`]), its service and its answers' bodies ([`Tracked`]): the
//! IO notes bytes arriving, the service notes requests starting and ending, a body notes each part of an answer
//! taken for writing. While no request is in flight, a connection that has received the first bytes of a request
//! has `header` to finish its headers (then it is cut off), one that has never sent a request is closed after
//! `first_request`, and an idle one after `idle`. An answer that makes no progress for `write` (a peer that does
//! not read, an HTTP/2 window that stays shut) cuts the connection off, so its memory is given back.
//!
//! At the connection cap, the listener asks the connection that has waited longest without a request to give way
//! ([`Registry::evict_one`]); one answering a request never does, and one receiving a request answers it first.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a connection may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// An idle keep-alive connection is closed after this.
    pub idle: Duration,
    /// A request whose first bytes arrived must have sent all its headers within this.
    pub header: Duration,
    /// A new connection must have sent its first request (its TLS handshake included) within this.
    pub first_request: Duration,
    /// An answer being written must make progress at least this often.
    pub write: Duration,
}

/// The protocol spoken on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1: bytes arriving while idle start a request.
    Http1,
    /// HTTP/2: bytes arriving while idle may be control frames (pings, settings); only requests count as activity.
    Http2,
}

/// What a connection is doing, as its IO, its service and its answers see it.
#[derive(Debug)]
pub(crate) struct Tracker {
    origin: Instant,
    /// Requests being answered (until their answer is handed over).
    in_flight: AtomicUsize,
    /// Requests received so far.
    requests: AtomicU64,
    /// Milliseconds since `origin` + 1 when the first bytes of a request arrived while idle; 0 when none did.
    head_since: AtomicU64,
    /// Milliseconds since `origin` of the last activity (bytes of a request read, a request answered).
    last_activity: AtomicU64,
    /// Answers whose body is still being written.
    sending: AtomicUsize,
    /// Milliseconds since `origin` of the last progress of an answer being written.
    progress: AtomicU64,
    /// Asked to give way (at the connection cap).
    evicted: AtomicBool,
    /// The task serving the connection, woken when it is asked to give way.
    waker: AtomicWaker,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            last_activity: AtomicU64::new(0),
            sending: AtomicUsize::new(0),
            progress: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }
}

/// How a connection not answering anything stands, for choosing which one gives way (lowest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Standing {
    /// Never sent a request (the handshake included).
    NoRequestYet,
    /// Sending a request's headers.
    InHeaders,
    /// Idle between requests.
    Idle,
}

impl Tracker {
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, millis: u64) -> Instant {
        self.origin + Duration::from_millis(millis)
    }

    /// Bytes arrived.
    fn read(&self, protocol: Protocol) {
        if protocol == Protocol::Http2 {
            // Pings and settings are not activity: an HTTP/2 connection idles between requests however it pings.
            return;
        }
        let now = self.now();
        self.last_activity.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_since.compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// A request reached the service (its headers are complete).
    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Release);
    }

    /// A request was answered (its answer handed over for writing).
    pub(crate) fn request_finished(&self) {
        self.last_activity.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// An answer's body is about to be written.
    fn answer_started(&self) {
        self.progress.store(self.now(), Ordering::Relaxed);
        self.sending.fetch_add(1, Ordering::AcqRel);
    }

    /// Part of an answer was taken for writing.
    fn answer_progressed(&self) {
        self.progress.store(self.now(), Ordering::Relaxed);
    }

    /// An answer's body is written (or dropped).
    fn answer_ended(&self) {
        let now = self.now();
        self.last_activity.store(now, Ordering::Relaxed);
        self.sending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Asks the connection to give way: it closes as soon as it is not answering anything.
    pub(crate) fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0 || self.sending.load(Ordering::Acquire) > 0
    }

    /// Whether a request's first bytes arrived within [`GRACE`] (it is being received, not stalled).
    fn receiving(&self) -> bool {
        match self.head_since.load(Ordering::Acquire) {
            0 => false,
            since => self.now().saturating_sub(since - 1) < GRACE.as_millis() as u64,
        }
    }

    /// Whether (and how) it gives way now, having been asked to.
    fn giving_way(&self, protocol: Protocol) -> GiveWay {
        if !self.evicted.load(Ordering::Acquire) || self.busy() {
            return GiveWay::No;
        }
        match protocol {
            // A request being received is answered first; the connection goes once it is idle again.
            Protocol::Http1 if self.receiving() => GiveWay::No,
            Protocol::Http1 if self.head_since.load(Ordering::Acquire) == 0 => GiveWay::UnlessArriving,
            _ => GiveWay::Now,
        }
    }

    /// Resolves when the connection is asked to give way (for the TLS handshake, before [`Timed`] takes over).
    pub async fn evicted(&self) {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.evicted.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
    }

    /// Where it stands, and since when (milliseconds), when it is not answering anything.
    fn standing(&self) -> Option<(Standing, u64)> {
        if self.busy() || self.evicted.load(Ordering::Acquire) {
            return None;
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            return Some((Standing::NoRequestYet, 0));
        }
        match self.head_since.load(Ordering::Acquire) {
            0 => Some((Standing::Idle, self.last_activity.load(Ordering::Relaxed))),
            since => Some((Standing::InHeaders, since - 1)),
        }
    }

    /// The write deadline, while an answer is being written.
    fn writing(&self, timeouts: Timeouts) -> Option<Instant> {
        (self.sending.load(Ordering::Acquire) > 0)
            .then(|| self.at(self.progress.load(Ordering::Relaxed)) + timeouts.write)
    }

    /// What the connection waits for while its IO has nothing to read, and until when.
    fn waiting(&self, protocol: Protocol, timeouts: Timeouts) -> Option<(Wait, Instant)> {
        if let Some(deadline) = self.writing(timeouts) {
            return Some((Wait::Write, deadline));
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_since.load(Ordering::Acquire) {
            since if since > 0 && protocol == Protocol::Http1 => {
                Some((Wait::Headers, self.at(since - 1) + timeouts.header))
            }
            _ if self.requests.load(Ordering::Relaxed) == 0 => {
                Some((Wait::Idle, self.origin + timeouts.first_request.min(timeouts.idle)))
            }
            _ => Some((Wait::Idle, self.at(self.last_activity.load(Ordering::Relaxed)) + timeouts.idle)),
        }
    }
}

/// What a connection asked to give way does when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GiveWay {
    /// Not yet: it is answering, or receiving, a request.
    No,
    /// It ends, unless a request's first bytes are already there to be read (they are answered first: the client
    /// wrote them before it could see the connection close, and would not send a POST again).
    UnlessArriving,
    /// It ends (an HTTP/2 connection, or one stalled in its headers).
    Now,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Headers,
    Idle,
    Write,
}

/// How long a new connection is left to make its TLS handshake and send its first request, and a request whose
/// first bytes arrived to complete its headers, before the connection may be asked to give way to another.
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// The connections of one listener, for choosing which gives way at the cap.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Tracker>>>,
}

impl Registry {
    /// Notes a new connection; it is forgotten when the returned guard drops.
    pub fn enter(self: &Arc<Self>, tracker: Arc<Tracker>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tracker);
        Registered { registry: self.clone(), id }
    }

    /// Asks the connection that has waited longest without a request (never sent one, then stalled in its
    /// headers, then idle the longest) to give way; one opened within [`GRACE`] is left to send its first request,
    /// and one whose request began arriving within it to receive that request. False when no connection may give
    /// way.
    pub(crate) fn evict_one(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let victim = open
            .values()
            .filter_map(|t| {
                t.standing().map(|(standing, since)| (standing, t.origin + Duration::from_millis(since), t))
            })
            .filter(|(standing, since, t)| match standing {
                Standing::NoRequestYet => t.origin.elapsed() >= GRACE,
                Standing::InHeaders => since.elapsed() >= GRACE,
                Standing::Idle => true,
            })
            .min_by_key(|(standing, since, _)| (*standing, *since));
        match victim {
            Some((_, _, tracker)) => {
                tracker.evict();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in its [`Registry`], given up when dropped.
#[derive(Debug)]
pub struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

/// A connection's IO with the timeouts of [`Tracker`]: an idle connection (or one asked to give way) reads as
/// closed (a clean end); one that stalls inside a request's headers, or whose answer is not taken, fails.
pub(crate) struct Timed<T> {
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

    /// Waits for `deadline` (registering the task to be woken then); `Ready` once it has passed.
    fn expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }
}

fn stalled_answer() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the answer was not taken by the client within the write timeout")
}

impl<T: AsyncRead + Unpin> AsyncRead for Timed<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.tracker.waker.register(cx.waker());
        let before = buf.filled().len();
        match self.tracker.giving_way(self.protocol) {
            GiveWay::No => {}
            GiveWay::Now => return Poll::Ready(Ok(())),
            GiveWay::UnlessArriving => {
                return match Pin::new(&mut self.inner).poll_read(cx, buf) {
                    Poll::Ready(Ok(())) if buf.filled().len() > before => {
                        self.tracker.read(self.protocol);
                        Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    _ => Poll::Ready(Ok(())),
                };
            }
        }
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.tracker.read(self.protocol);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some((wait, deadline)) = self.tracker.waiting(self.protocol, self.timeouts) else {
                    return Poll::Pending;
                };
                if !self.expired(cx, deadline) {
                    return Poll::Pending;
                }
                match wait {
                    // An idle connection ends as if the peer had closed it: hyper closes it cleanly.
                    Wait::Idle => Poll::Ready(Ok(())),
                    Wait::Headers => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request headers not received within the read timeout",
                    ))),
                    Wait::Write => Poll::Ready(Err(stalled_answer())),
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Timed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.write_stalled(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.write_stalled(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.write_stalled(cx).map(Err),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<T> Timed<T> {
    /// A write the peer does not take: pending until the answer's write timeout, then an error.
    fn write_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.tracker.writing(self.timeouts) {
            Some(deadline) if self.expired(cx, deadline) => Poll::Ready(stalled_answer()),
            _ => Poll::Pending,
        }
    }
}

/// An answer's body, reporting its progress to the connection's [`Tracker`] (see [`Timed`]).
pub(crate) struct Tracked<B> {
    inner: B,
    tracker: Arc<Tracker>,
}

impl<B> Tracked<B> {
    /// Wraps the body of an answer about to be written on the connection of `tracker`.
    pub fn new(inner: B, tracker: Arc<Tracker>) -> Self {
        tracker.answer_started();
        Self { inner, tracker }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.tracker.answer_ended();
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(_)) = &polled {
            self.tracker.answer_progressed();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn timeouts() -> Timeouts {
        Timeouts {
            idle: Duration::from_secs(120),
            header: Duration::from_secs(10),
            first_request: Duration::from_secs(5),
            write: Duration::from_secs(10),
        }
    }

    /// A tracker whose connection has already served one request.
    fn used() -> Arc<Tracker> {
        let tracker = Arc::new(Tracker::default());
        tracker.request_started();
        tracker.request_finished();
        tracker
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_stays_open_until_the_idle_timeout_then_ends_cleanly() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = Timed::new(server, used(), Protocol::Http1, timeouts());
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
        let tracker = used();
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
        let mut io = Timed::new(server, used(), Protocol::Http2, timeouts());
        client.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.expect("bytes") > 0);
        let read = tokio::spawn(async move { io.read(&mut buf).await });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!read.is_finished(), "only the idle timeout applies to HTTP/2");
        read.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_sends_a_request_is_closed_after_the_first_request_timeout() {
        let (_client, server) = tokio::io::duplex(64);
        let mut io = Timed::new(server, Arc::new(Tracker::default()), Protocol::Http1, timeouts());
        let read = tokio::spawn(async move { io.read(&mut [0u8; 8]).await });
        tokio::time::sleep(Duration::from_millis(4900)).await;
        assert!(!read.is_finished());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(read.await.expect("task").expect("a clean end"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_that_only_answers_pings_is_idle() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = Timed::new(server, used(), Protocol::Http2, timeouts());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => continue,
                    Err(e) => return Err(e),
                }
            }
        });
        // A ping acknowledgement every 30 s never makes the connection active.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let _ = client.write_all(b"ping-ack").await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(reader.is_finished(), "closed at the idle timeout, pings notwithstanding");
        reader.await.expect("task").expect("a clean end");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_the_peer_does_not_take_cuts_the_connection_off() {
        // A duplex of 64 bytes that nobody reads: writes block once it is full.
        let (_client, server) = tokio::io::duplex(64);
        let tracker = used();
        let _answer = Tracked::new(http_body_util::Empty::<axum::body::Bytes>::new(), tracker.clone());
        let mut io = Timed::new(server, tracker, Protocol::Http1, timeouts());
        let write = tokio::spawn(async move { io.write_all(&[b'x'; 4096]).await });
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!write.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let err = write.await.expect("task").expect_err("cut off");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_waiting_connection_without_a_request_gives_way() {
        let registry = Arc::new(Registry::default());
        let answering = used();
        answering.request_started();
        let idle = used();
        let silent = Arc::new(Tracker::default());
        tokio::time::advance(Duration::from_secs(1)).await;
        let newcomer = Arc::new(Tracker::default());
        let arriving = used();
        arriving.read(Protocol::Http1);
        let _guards: Vec<_> = [&answering, &idle, &silent, &newcomer, &arriving]
            .into_iter()
            .map(|t| registry.enter((*t).clone()))
            .collect();
        assert!(registry.evict_one());
        assert!(silent.evicted.load(Ordering::Acquire), "no request yet: the first to go");
        assert!(registry.evict_one());
        assert!(idle.evicted.load(Ordering::Acquire), "then the idle one");
        assert!(
            !registry.evict_one(),
            "one answering a request never gives way, nor one just opened, nor one receiving a request"
        );
        assert!(!answering.evicted.load(Ordering::Acquire));
        assert!(!newcomer.evicted.load(Ordering::Acquire));
        assert!(!arriving.evicted.load(Ordering::Acquire));
        tokio::time::advance(GRACE).await;
        assert!(registry.evict_one());
        assert!(newcomer.evicted.load(Ordering::Acquire), "once it has had its grace");
        assert!(registry.evict_one());
        assert!(arriving.evicted.load(Ordering::Acquire), "stalled in its headers once the grace is over");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_asked_to_give_way_answers_a_request_already_arriving_first() {
        let (mut client, server) = tokio::io::duplex(1024);
        let tracker = used();
        let mut io = Timed::new(server, tracker.clone(), Protocol::Http1, timeouts());
        // The client wrote its request before it could see the connection close.
        client.write_all(b"POST /mutate HTTP/1.1\r\n").await.expect("write");
        tracker.evict();
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"POST /mutate HTTP/1.1\r\n", "what arrived is read, not dropped");
        client.write_all(b"host: x\r\n").await.expect("write");
        assert!(io.read(&mut buf).await.expect("read") > 0, "the rest of its headers too");
        tracker.request_started();
        tracker.request_finished();
        assert_eq!(io.read(&mut buf).await.expect("a clean end"), 0, "then it goes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_asked_to_give_way_ends_cleanly() {
        let (_client, server) = tokio::io::duplex(64);
        let tracker = used();
        let mut io = Timed::new(server, tracker.clone(), Protocol::Http1, timeouts());
        let read = tokio::spawn(async move { io.read(&mut [0u8; 8]).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!read.is_finished());
        tracker.evict();
        assert_eq!(read.await.expect("task").expect("a clean end"), 0);
    }
}
