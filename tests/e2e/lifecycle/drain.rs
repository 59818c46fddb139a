//! Shutting down without failed admissions: a steady client, two replicas behind a round-robin proxy that only
//! sends new connections to ready replicas (as Service endpoints do), and a SIGTERM to one of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::common::serve::{Serve, pair_in};
use super::{client, review_body, serve_args};

/// A TCP proxy that round-robins new connections over the backends whose `/readyz` answers 200, polled every
/// 100 ms; `seen_unready[i]` counts the polls that found backend `i` not ready.
async fn proxy(backends: Vec<(SocketAddr, SocketAddr)>) -> (SocketAddr, Arc<Vec<AtomicUsize>>) {
    otel_injector::webhook::tls::install_crypto_provider();
    let seen_unready: Arc<Vec<AtomicUsize>> = Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ready: Arc<Vec<AtomicBool>> = Arc::new(backends.iter().map(|_| AtomicBool::new(true)).collect());
    tokio::spawn({
        let (ready, backends, seen_unready) = (ready.clone(), backends.clone(), seen_unready.clone());
        async move {
            let http = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().expect("client");
            loop {
                for (i, (_, ops)) in backends.iter().enumerate() {
                    let ok = http.get(format!("http://{ops}/readyz")).send().await.is_ok_and(|r| r.status() == 200);
                    ready[i].store(ok, Ordering::Release);
                    if !ok {
                        seen_unready[i].fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    tokio::spawn(async move {
        let next = AtomicUsize::new(0);
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { continue };
            let n = backends.len();
            let first = next.fetch_add(1, Ordering::Relaxed);
            let pick = (0..n).map(|k| (first + k) % n).find(|&i| ready[i].load(Ordering::Acquire));
            let Some(i) = pick else { continue };
            let backend = backends[i].0;
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, seen_unready)
}

/// Whether process `pid` has exited (gone, or a zombie not yet waited for).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigterm_of_one_replica_loses_no_admission() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pair_in(dir.path());
    let args = serve_args(dir.path(), &["--drain-delay", "2s", "--shutdown-grace", "5s"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut leaving = Serve::start(&args);
    let staying = Serve::start(&args);
    let (front, seen_unready) =
        proxy(vec![(leaving.webhook, leaving.metrics), (staying.webhook, staying.metrics)]).await;
    let url = format!("https://127.0.0.1:{}/mutate", front.port());
    // Half the admissions reuse keep-alive connections, half open a new one each (the way a new API server
    // connection lands on whichever endpoint the Service picks).
    let c = client(&pki.ca_pem);
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA");
    let fresh = reqwest::Client::builder()
        .tls_certs_only([ca])
        .http1_only()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    let mut requests = Vec::new();
    let (mut terminated, mut gone) = (None, None);
    while started.elapsed() < Duration::from_secs(7) {
        ticks.tick().await;
        if gone.is_none() && terminated.is_some() && exited(leaving.pid()) {
            gone = terminated.map(|t: Instant| t.elapsed());
        }
        if terminated.is_none() && started.elapsed() > Duration::from_millis(1500) {
            leaving.terminate();
            terminated = Some(Instant::now());
        }
        let t0 = started;
        let c = if requests.len() % 2 == 0 { c.clone() } else { fresh.clone() };
        let (url, sent, failed) = (url.clone(), sent.clone(), failed.clone());
        requests.push(tokio::spawn(async move {
            sent.fetch_add(1, Ordering::Relaxed);
            let response = c.post(&url).header("content-type", "application/json").body(review_body()).send().await;
            match response {
                Ok(r) if r.status() == 200 => {}
                other => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed admission at {:?}: {:?}", t0.elapsed(), other.map(|r| r.status()));
                }
            }
        }));
    }
    for r in requests {
        r.await.expect("joined");
    }
    let exited = leaving.wait(Duration::from_secs(10)).expect("the terminated replica exits");
    let took = gone.expect("the replica exited while the client kept sending");
    eprintln!(
        "{} admissions at 50/s across a SIGTERM: {} failed; the replica exited {:?} after SIGTERM",
        sent.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        took
    );
    assert!(exited.success(), "{exited:?}: {}", leaving.logs());
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(7), "served the drain delay, then exited");
    let unready = seen_unready[0].load(Ordering::Relaxed);
    assert!(unready >= 5, "the proxy saw the leaving replica unready ({unready} polls) and routed around it");
    assert_eq!(seen_unready[1].load(Ordering::Relaxed), 0, "the staying replica stayed ready");
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(
        staying
            .metric(
                "otel_injector_admission_requests_total{kind=\"Pod\",operation=\"CREATE\",decision=\"instrumented\",reason=\"default\"}"
            )
            .unwrap_or(0.0)
            > 0.0
    );
}
