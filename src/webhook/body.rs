//! Request bodies read against a memory budget with a hard ceiling that can never deadlock.
//!
//! A body's first [`FIRST_PART`] bytes are charged, as they arrive, to a small pool: a slow client holds only what
//! it has sent, and typical reviews (a few KiB) never wait. A body that needs more reserves its whole declared length
//! at once from the body budget, first come first served, and gives its small part back. A reservation is only held
//! by a body that will complete (or time out), never by one waiting for more budget, so the queue always moves; a
//! budget charged chunk by chunk would let bodies that each hold part of it wait on each other until they all time
//! out.
//!
//! A reserved body lives in an anonymous memory map of exactly its size, unmapped when the answer has been written:
//! the allocator never sees multi-megabyte buffers, so a burst of them cannot leave its arenas at their peak.
//!
//! A body must keep arriving at [`MIN_RATE`] after a short grace, so a slow sender holds its share of the budget
//! for a second or so, not for the whole read timeout. A body waiting in line for room holds its first part in a
//! pool of its own, so the line never holds up small bodies; when that pool is full, it is answered 503 at once. Answers are charged to the same budget until they are
//! written ([`Outgoing`]): a client that does not read holds what it was sent, no more, and only until the
//! connection's write timeout cuts it off.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use memmap2::MmapMut;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of each body charged to the small pool before the body must reserve its whole length.
pub(crate) const FIRST_PART: usize = 64 * 1024;

/// The pool the first parts of bodies are charged to.
pub(crate) const SMALL_POOL: usize = 4 * 1024 * 1024;

/// The pool the first parts of bodies waiting for room are charged to: when it is full, a body that would wait is
/// answered 503 at once.
pub(crate) const WAITING_POOL: usize = 4 * 1024 * 1024;

/// At most this much of an oversized body is read and thrown away so the client sees the answer.
const DISCARD_AT_MOST: usize = 64 * 1024 * 1024;

/// The slowest a body may arrive, after [`GRACE`]: the API server sends a whole review at once, far faster.
pub(crate) const MIN_RATE: usize = 256 * 1024;

/// How long a body may take before [`MIN_RATE`] applies.
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// The parts an answer is handed to the connection in: a peer that stops reading (or an HTTP/2 window that stays
/// shut) leaves the rest unbuffered, in the answer that holds its budget.
const ANSWER_PART: usize = 16 * 1024;

/// The bytes of request bodies that may be held in memory at once.
#[derive(Debug)]
pub struct Budget {
    small: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
    /// The first parts of bodies waiting for room in `reserved`: moved out of the small pool, so that bodies in
    /// that queue never hold up the small ones.
    waiting: Arc<Semaphore>,
}

impl Budget {
    /// A budget of `bytes` for bodies longer than [`FIRST_PART`], plus [`SMALL_POOL`] for first parts and
    /// [`WAITING_POOL`] for those of bodies waiting for room.
    pub fn new(bytes: usize) -> Self {
        Self {
            small: Arc::new(Semaphore::new(SMALL_POOL)),
            reserved: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
            waiting: Arc::new(Semaphore::new(WAITING_POOL)),
        }
    }

    /// Bytes free now, in the small pool and in the budget for whole bodies.
    #[cfg(test)]
    fn available(&self) -> (usize, usize) {
        (self.small.available_permits(), self.reserved.available_permits())
    }
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Longer than the limit (the rest has been read and thrown away, up to a bound).
    TooLarge,
    /// Not complete in time.
    Timeout,
    /// The connection failed.
    Read(String),
    /// The budget had no room for it in time.
    Busy,
    /// Arriving slower than [`MIN_RATE`].
    TooSlow,
}

/// A body read in full, holding its share of the budget until dropped.
#[derive(Debug)]
pub struct Received {
    store: Store,
    _held: Option<OwnedSemaphorePermit>,
}

impl Deref for Received {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.store {
            Store::Heap(bytes) => bytes,
            Store::Mapped { map, len } => &map[..*len],
        }
    }
}

#[derive(Debug)]
enum Store {
    Heap(Vec<u8>),
    Mapped { map: MmapMut, len: usize },
}

impl Store {
    fn len(&self) -> usize {
        match self {
            Self::Heap(bytes) => bytes.len(),
            Self::Mapped { len, .. } => *len,
        }
    }

    /// Moves the bytes so far into room for exactly `whole` bytes.
    fn make_room(&mut self, whole: usize) {
        let Self::Heap(bytes) = self else { return };
        match MmapMut::map_anon(whole) {
            Ok(mut map) => {
                map[..bytes.len()].copy_from_slice(bytes);
                *self = Self::Mapped { map, len: bytes.len() };
            }
            // Without a map (address space exhausted?), the heap still works, and the budget still bounds it.
            Err(_) => bytes.reserve_exact(whole - bytes.len()),
        }
    }

    fn extend(&mut self, chunk: &[u8]) {
        match self {
            Self::Heap(bytes) => bytes.extend_from_slice(chunk),
            Self::Mapped { map, len } => {
                map[*len..*len + chunk.len()].copy_from_slice(chunk);
                *len += chunk.len();
            }
        }
    }
}

/// Reads a body of at most `limit` bytes by `until`, `declared` being its `Content-Length` (already checked
/// against `limit`), holding budget for every byte kept.
pub async fn read(
    body: &mut Body,
    declared: Option<usize>,
    limit: usize,
    budget: &Budget,
    until: Instant,
) -> Result<Received, Refused> {
    let mut store = Store::Heap(Vec::with_capacity(declared.unwrap_or(0).min(FIRST_PART)));
    let mut first_part: Option<OwnedSemaphorePermit> = None;
    let mut reserved: Option<(OwnedSemaphorePermit, usize)> = None;
    let started = Instant::now();
    // Time spent waiting for room in the budget, during which the sender could not send: not held against it.
    let mut waited = Duration::ZERO;
    loop {
        // What has arrived buys time at the minimum rate; the read timeout bounds it all.
        let earned = started + GRACE + waited + Duration::from_secs_f64(store.len() as f64 / MIN_RATE as f64);
        let next = earned.min(until);
        let frame = match tokio::time::timeout_at(next.into(), body.frame()).await {
            Err(_) if next < until => return Err(Refused::TooSlow),
            Err(_) => return Err(Refused::Timeout),
            Ok(None) => return Ok(Received { store, _held: reserved.map(|(p, _)| p).or(first_part) }),
            Ok(Some(Err(e))) => return Err(Refused::Read(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(chunk) = frame.into_data() else { continue };
        let total = store.len() + chunk.len();
        if total > limit {
            discard(body, until).await;
            return Err(Refused::TooLarge);
        }
        match &reserved {
            // More than was declared: hyper ends such a body with an error; never write past the reservation.
            Some((_, whole)) if total > *whole => return Err(Refused::Read("body longer than declared".to_owned())),
            Some(_) => {}
            None => {
                let small = u32::try_from(chunk.len()).ok().filter(|_| total <= FIRST_PART);
                let whole = declared.unwrap_or(limit).clamp(total, limit);
                let n = u32::try_from(whole).map_err(|_| Refused::TooLarge)?;
                let waiting = Instant::now();
                let room = match small {
                    // A first part: from the small pool; when that is full (only bodies still arriving hold it,
                    // and slow ones are cut off), from the budget if it has room now, else from the small pool as
                    // it frees: never in the queue behind bodies of megabytes.
                    Some(part) => match budget.small.clone().try_acquire_many_owned(part) {
                        Ok(permit) => Room::Part(permit),
                        Err(_) => match budget.reserved.clone().try_acquire_many_owned(n) {
                            Ok(permit) => Room::Whole(permit),
                            Err(_) => {
                                let freed = budget.small.clone().acquire_many_owned(part);
                                match tokio::time::timeout_at(until.into(), freed).await {
                                    Ok(Ok(permit)) => Room::Part(permit),
                                    _ => return Err(Refused::Busy),
                                }
                            }
                        },
                    },
                    None => match budget.reserved.clone().try_acquire_many_owned(n) {
                        Ok(permit) => Room::Whole(permit),
                        Err(_) => {
                            // Waiting in line, its first part moves from the small pool to the waiting pool.
                            let kept = u32::try_from(store.len().max(1)).map_err(|_| Refused::TooLarge)?;
                            let Ok(in_line) = budget.waiting.clone().try_acquire_many_owned(kept) else {
                                return Err(Refused::Busy);
                            };
                            first_part = None;
                            let acquired = budget.reserved.clone().acquire_many_owned(n);
                            let room = tokio::time::timeout_at(until.into(), acquired).await;
                            drop(in_line);
                            match room {
                                Ok(Ok(permit)) => Room::Whole(permit),
                                _ => return Err(Refused::Busy),
                            }
                        }
                    },
                };
                waited += waiting.elapsed();
                match room {
                    Room::Part(permit) => match &mut first_part {
                        Some(held) => held.merge(permit),
                        None => first_part = Some(permit),
                    },
                    Room::Whole(permit) => {
                        reserved = Some((permit, whole));
                        first_part = None;
                        store.make_room(whole);
                    }
                }
            }
        }
        store.extend(&chunk);
    }
}

/// Holds `len` bytes of the budget for an answer until it is written: from the small pool when it fits there,
/// else from the budget for whole bodies, waiting for room until `until`.
pub async fn hold(budget: &Budget, len: usize, until: Instant) -> Result<OwnedSemaphorePermit, Refused> {
    let n = u32::try_from(len.max(1)).map_err(|_| Refused::TooLarge)?;
    if len <= FIRST_PART
        && let Ok(permit) = budget.small.clone().try_acquire_many_owned(n)
    {
        return Ok(permit);
    }
    match tokio::time::timeout_at(until.into(), budget.reserved.clone().acquire_many_owned(n)).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(Refused::Busy),
    }
}

/// An answer's bytes, handed to the connection part by part, holding their share of the budget until the last
/// part is taken (or the connection is dropped).
#[derive(Debug)]
pub(crate) struct Outgoing {
    rest: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

impl Outgoing {
    /// `bytes`, holding `held` until written.
    pub fn new(bytes: Vec<u8>, held: OwnedSemaphorePermit) -> Self {
        Self { rest: Bytes::from(bytes), _held: Some(held) }
    }
}

impl hyper::body::Body for Outgoing {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            self._held = None;
            return std::task::Poll::Ready(None);
        }
        let take = self.rest.len().min(ANSWER_PART);
        let part = self.rest.split_to(take);
        if self.rest.is_empty() {
            self._held = None;
        }
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// Where a body's next bytes are charged.
enum Room {
    /// To its first part, in the small pool.
    Part(OwnedSemaphorePermit),
    /// To a reservation of its whole length.
    Whole(OwnedSemaphorePermit),
}

/// Reads and throws away what is left of a body (at most [`DISCARD_AT_MOST`] bytes, until `until`), so a client
/// that sends its whole body before reading gets to read the answer instead of a reset.
pub(crate) async fn discard(body: &mut Body, until: Instant) {
    let mut seen = 0usize;
    while seen <= DISCARD_AT_MOST {
        match tokio::time::timeout_at(until.into(), body.frame()).await {
            Ok(Some(Ok(frame))) => seen += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(chunks: Vec<Vec<u8>>) -> Body {
        let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        Body::from_stream(stream)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn a_small_body_uses_the_small_pool_and_gives_it_back() {
        let budget = Budget::new(1 << 20);
        let received = read(&mut body_of(vec![b"{\"a\":".to_vec(), b"1}".to_vec()]), Some(7), 100, &budget, soon())
            .await
            .expect("read");
        assert_eq!(&*received, b"{\"a\":1}");
        assert_eq!(budget.available(), (SMALL_POOL - 7, 1 << 20));
        drop(received);
        assert_eq!(budget.available(), (SMALL_POOL, 1 << 20));
    }

    #[tokio::test]
    async fn a_large_body_reserves_its_declared_length_and_leaves_the_small_pool() {
        let budget = Budget::new(1 << 20);
        let chunks: Vec<Vec<u8>> = (0..10).map(|i| vec![b'a' + i; 40_000]).collect();
        let received = read(&mut body_of(chunks.clone()), Some(400_000), 500_000, &budget, soon()).await.expect("read");
        assert_eq!(&*received, chunks.concat().as_slice());
        assert_eq!(budget.available(), (SMALL_POOL, (1 << 20) - 400_000));
        drop(received);
        assert_eq!(budget.available(), (SMALL_POOL, 1 << 20));
    }

    #[tokio::test]
    async fn a_body_without_length_reserves_the_limit() {
        let budget = Budget::new(1 << 20);
        let received = read(&mut body_of(vec![vec![b' '; 100_000]]), None, 300_000, &budget, soon()).await;
        assert_eq!(received.expect("read").len(), 100_000);
        let held = read(&mut body_of(vec![vec![b' '; 100_000]]), None, 300_000, &budget, soon()).await.expect("read");
        assert_eq!(budget.available().1, (1 << 20) - 300_000);
        drop(held);
    }

    #[tokio::test]
    async fn bodies_that_each_hold_part_of_the_budget_cannot_wait_on_each_other() {
        // Two bodies of 600 KB against 1 MiB: charged chunk by chunk they would each stall half-way. Whole
        // reservations let one finish, then the other.
        let budget = Arc::new(Budget::new(1 << 20));
        let (tx_a, rx_a) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        let (tx_b, rx_b) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        let stream = |rx: tokio::sync::mpsc::Receiver<_>| {
            Body::from_stream(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }))
        };
        let (mut a, mut b) = (stream(rx_a), stream(rx_b));
        let until = soon();
        let (ba, bb) = (budget.clone(), budget.clone());
        let ra = tokio::spawn(async move { read(&mut a, Some(600_000), 1 << 20, &ba, until).await.map(|r| r.len()) });
        let rb = tokio::spawn(async move { read(&mut b, Some(600_000), 1 << 20, &bb, until).await.map(|r| r.len()) });
        for tx in [tx_a, tx_b] {
            tokio::spawn(async move {
                for _ in 0..6 {
                    tx.send(Ok(vec![b' '; 100_000])).await.expect("send");
                }
            });
        }
        let results = tokio::time::timeout(Duration::from_secs(3), async { (ra.await, rb.await) }).await;
        let (ra, rb) = results.expect("no deadlock");
        assert_eq!((ra.expect("joined"), rb.expect("joined")), (Ok(600_000), Ok(600_000)));
    }

    #[tokio::test]
    async fn no_room_in_time_is_busy_and_too_long_is_too_large() {
        let budget = Budget::new(100_000);
        let held = read(&mut body_of(vec![vec![b' '; 90_000]]), Some(90_000), 100_000, &budget, soon()).await;
        let until = Instant::now() + Duration::from_millis(200);
        let busy = read(&mut body_of(vec![vec![b' '; 90_000]]), Some(90_000), 100_000, &budget, until).await;
        assert_eq!(busy.map(|r| r.len()), Err(Refused::Busy));
        drop(held);
        let long = read(&mut body_of(vec![vec![b' '; 60_000]; 2]), None, 100_000, &budget, soon()).await;
        assert_eq!(long.map(|r| r.len()), Err(Refused::TooLarge));
    }

    #[tokio::test]
    async fn a_body_slower_than_the_minimum_rate_is_cut_off_after_the_grace() {
        let budget = Budget::new(1 << 20);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        let mut body =
            Body::from_stream(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }));
        let started = Instant::now();
        let until = started + Duration::from_secs(10);
        let sender = tokio::spawn(async move {
            // 64 KiB at once (a quarter of a second at the minimum rate), then a byte a second.
            tx.send(Ok(vec![b' '; 64 * 1024])).await.expect("send");
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx.send(Ok(vec![b' '])).await.is_err() {
                    return;
                }
            }
        });
        let read = read(&mut body, Some(200_000), 1 << 20, &budget, until).await;
        assert_eq!(read.map(|r| r.len()), Err(Refused::TooSlow));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1250) && took < Duration::from_millis(2300), "{took:?}");
        assert_eq!(budget.available(), (SMALL_POOL, 1 << 20), "all given back");
        sender.abort();
    }

    #[tokio::test]
    async fn a_body_at_the_minimum_rate_is_read_whole() {
        use futures::StreamExt;
        let budget = Budget::new(1 << 20);
        // 400 KiB in 40 parts, at about twice the minimum rate.
        let parts = futures::stream::iter(0..40).then(|_| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, std::io::Error>(vec![b' '; 10 * 1024])
        });
        let mut body = Body::from_stream(parts);
        let read = read(&mut body, Some(400 * 1024), 1 << 20, &budget, soon()).await;
        assert_eq!(read.map(|r| r.len()), Ok(400 * 1024));
    }

    #[tokio::test]
    async fn an_answer_holds_its_budget_until_its_last_part_is_taken() {
        use hyper::body::Body as _;
        let budget = Budget::new(1 << 20);
        let held = hold(&budget, 100_000, soon()).await.expect("room");
        assert_eq!(budget.available(), (SMALL_POOL, (1 << 20) - 100_000));
        let mut answer = Outgoing::new(vec![b'a'; 100_000], held);
        let mut parts = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut answer).poll_frame(cx)).await {
            parts.push(frame.expect("data").into_data().expect("data").len());
            if parts.len() < 7 {
                assert_eq!(budget.available().1, (1 << 20) - 100_000, "held while parts remain");
            }
        }
        assert_eq!(parts, [16384, 16384, 16384, 16384, 16384, 16384, 1696]);
        assert_eq!(budget.available(), (SMALL_POOL, 1 << 20));
        let small = hold(&budget, 2_000, soon()).await.expect("room");
        assert_eq!(budget.available(), (SMALL_POOL - 2_000, 1 << 20), "a small answer from the small pool");
        drop(small);
        let _all = hold(&budget, 1 << 20, soon()).await.expect("room");
        let full = hold(&budget, 100_000, Instant::now() + Duration::from_millis(50)).await;
        assert_eq!(full.map(|_| ()), Err(Refused::Busy));
    }
}
