//! The serving defaults, written once: the `serve` flags show and use them, and [`super::server::ServeOptions::new`]
//! and [`super::state::ReviewLimits::default`] start from them. Durations are written as the flags take them.

use std::time::Duration;

/// `--listen`.
pub(crate) const LISTEN: &str = "0.0.0.0:8443";
/// `--metrics-listen`.
pub(crate) const METRICS_LISTEN: &str = "0.0.0.0:9090";
/// `--reload-interval`.
pub(crate) const RELOAD_INTERVAL: &str = "10s";
/// `--read-timeout`.
pub(crate) const READ_TIMEOUT: &str = "10s";
/// `--idle-timeout`: longer than the API server's 90 s keep-alive.
pub(crate) const IDLE_TIMEOUT: &str = "120s";
/// `--first-request-timeout`.
pub(crate) const FIRST_REQUEST_TIMEOUT: &str = "5s";
/// `--write-timeout`.
pub(crate) const WRITE_TIMEOUT: &str = "10s";
/// `--max-in-flight`.
pub(crate) const MAX_IN_FLIGHT: usize = 256;
/// `--max-connections`.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// `--body-budget`.
pub(crate) const BODY_BUDGET: usize = 16 * 1024 * 1024;
/// `--drain-delay`.
pub(crate) const DRAIN_DELAY: &str = "5s";
/// `--shutdown-grace`.
pub(crate) const SHUTDOWN_GRACE: &str = "20s";

/// A default duration's value: whole seconds, `<n>s` (checked when the crate compiles).
pub const fn seconds(text: &str) -> Duration {
    let bytes = text.as_bytes();
    assert!(bytes.len() >= 2 && bytes[bytes.len() - 1] == b's', "a default duration is written <n>s");
    let mut n = 0u64;
    let mut i = 0;
    while i < bytes.len() - 1 {
        assert!(bytes[i].is_ascii_digit(), "a default duration is written <n>s");
        n = n * 10 + (bytes[i] - b'0') as u64;
        i += 1;
    }
    Duration::from_secs(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::syntax::parse_duration;

    #[test]
    fn the_defaults_read_as_the_flags_read_them() {
        for text in [RELOAD_INTERVAL, READ_TIMEOUT, IDLE_TIMEOUT, FIRST_REQUEST_TIMEOUT, WRITE_TIMEOUT, DRAIN_DELAY] {
            assert_eq!(Ok(seconds(text)), parse_duration(text), "{text}");
        }
        assert_eq!(seconds(SHUTDOWN_GRACE), Duration::from_secs(20));
        assert!(
            LISTEN.parse::<std::net::SocketAddr>().is_ok() && METRICS_LISTEN.parse::<std::net::SocketAddr>().is_ok()
        );
    }
}
