//! The API server's version, read by discovery at start and then periodically; it decides `sidecar.mode: auto` and
//! `agents.delivery: auto`.
//!
//! Behind a load balancer the API servers of a cluster being upgraded answer with different versions, and a pod
//! with a native sidecar is refused by one that is too old. So the version in force is the lowest of the last few
//! readings: a newer version is trusted only once every recent reading agrees.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::snapshot::{self, ReadError};
use crate::engine::syntax::KubeVersion;

/// How many recent readings are kept.
const READINGS: usize = 5;

/// The server version in force: the lowest of the last few readings, or unknown.
#[derive(Debug, Default)]
pub struct ServerVersion {
    readings: Mutex<VecDeque<KubeVersion>>,
    /// `major << 32 | minor`; 0 means unknown. Read on every admission without a lock.
    current: AtomicU64,
}

impl ServerVersion {
    /// A tracker that knows `version` already (tests, `preview --kube-version`).
    pub fn known(version: KubeVersion) -> Self {
        let tracker = Self::default();
        tracker.record(version);
        tracker
    }

    /// The version in force, if any reading succeeded.
    pub fn get(&self) -> Option<KubeVersion> {
        match self.current.load(Ordering::Acquire) {
            0 => None,
            packed => Some(KubeVersion { major: (packed >> 32) as u32, minor: packed as u32 }),
        }
    }

    /// Adds a reading.
    pub fn record(&self, version: KubeVersion) {
        let mut readings = self.readings.lock().unwrap_or_else(|e| e.into_inner());
        readings.push_back(version);
        while readings.len() > READINGS {
            readings.pop_front();
        }
        let lowest = readings.iter().min().copied().unwrap_or(version);
        let packed = (u64::from(lowest.major) << 32) | u64::from(lowest.minor);
        let before = self.current.swap(packed, Ordering::AcqRel);
        if before != packed {
            tracing::info!(version = %lowest, native_sidecars = lowest.has_native_sidecars(), "API server version");
        }
    }

    /// Reads the version once and records it.
    pub async fn read(&self, client: &kube::Client) -> Result<KubeVersion, ReadError> {
        let version = snapshot::server_version(client).await?;
        self.record(version);
        Ok(version)
    }

    /// Reads the version every `interval` (the first time at once) until the task is aborted.
    pub fn poll(self: Arc<Self>, client: kube::Client, interval: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = self.read(&client).await {
                    tracing::warn!(error = %e, "cannot read the API server version; keeping the last one");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(minor: u32) -> KubeVersion {
        KubeVersion { major: 1, minor }
    }

    #[test]
    fn unknown_until_read() {
        assert_eq!(ServerVersion::default().get(), None);
        assert_eq!(ServerVersion::known(v(20)).get(), Some(v(20)));
    }

    #[test]
    fn the_lowest_recent_reading_is_in_force() {
        let tracker = ServerVersion::default();
        tracker.record(v(28));
        tracker.record(v(29));
        assert_eq!(tracker.get(), Some(v(28)), "one newer reading is not enough");
        for _ in 0..READINGS - 1 {
            tracker.record(v(29));
        }
        assert_eq!(tracker.get(), Some(v(29)), "once every recent reading agrees");
        tracker.record(v(28));
        assert_eq!(tracker.get(), Some(v(28)), "an older server shows up at once");
    }
}
