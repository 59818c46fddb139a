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

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use http_body_util::BodyExt;
use memmap2::MmapMut;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of each body charged to the small pool before the body must reserve its whole length.
pub const FIRST_PART: usize = 64 * 1024;

/// The pool the first parts of bodies are charged to.
pub const SMALL_POOL: usize = 4 * 1024 * 1024;

/// At most this much of an oversized body is read and thrown away so the client sees the answer.
const DISCARD_AT_MOST: usize = 64 * 1024 * 1024;

/// The bytes of request bodies that may be held in memory at once.
#[derive(Debug)]
pub struct Budget {
    small: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
}

impl Budget {
    /// A budget of `bytes` for bodies longer than [`FIRST_PART`], plus [`SMALL_POOL`] for first parts.
    pub fn new(bytes: usize) -> Self {
        Self {
            small: Arc::new(Semaphore::new(SMALL_POOL)),
            reserved: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Bytes free now, in the small pool and in the budget for whole bodies.
    pub fn available(&self) -> (usize, usize) {
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
    loop {
        let frame = match tokio::time::timeout_at(until.into(), body.frame()).await {
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
                match small.and_then(|n| budget.small.clone().try_acquire_many_owned(n).ok()) {
                    Some(permit) => match &mut first_part {
                        Some(held) => held.merge(permit),
                        None => first_part = Some(permit),
                    },
                    None => {
                        let whole = declared.unwrap_or(limit).clamp(total, limit);
                        let n = u32::try_from(whole).map_err(|_| Refused::TooLarge)?;
                        let acquired = budget.reserved.clone().acquire_many_owned(n);
                        let Ok(Ok(permit)) = tokio::time::timeout_at(until.into(), acquired).await else {
                            return Err(Refused::Busy);
                        };
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

/// Reads and throws away what is left of a body (at most [`DISCARD_AT_MOST`] bytes, until `until`), so a client
/// that sends its whole body before reading gets to read the answer instead of a reset.
pub async fn discard(body: &mut Body, until: Instant) {
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
    use std::time::Duration;

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
}
