//! The ConfigMaps a pod's containers draw variables from (`envFrom`), looked up for the engine: one bounded GET per
//! ConfigMap not seen in the last [`TTL`], answers cached (at most [`CAPACITY`] of them, each cut to what the engine
//! reads: the `OTEL_*` variables a source's prefix makes of its keys, at most [`ENTRY_BYTES`]). A lookup that fails
//! or takes too long is `Unknown`, never an error: the review is answered anyway, with a warning.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use crate::engine::inject::env_from::Found;

/// How long an answer is reused: a ConfigMap changed since reaches pods created after that.
pub const TTL: Duration = Duration::from_secs(30);
/// Answers kept (the oldest go first).
pub const CAPACITY: usize = 256;
/// Bytes of one answer kept (keys and values); a ConfigMap with more `OTEL_*` text is `Unknown`.
pub const ENTRY_BYTES: usize = 64 * 1024;

/// Where the ConfigMaps come from.
pub trait ConfigMapSource: Send + Sync {
    /// ConfigMap `namespace/name`, only the keys one of `prefixes` makes an `OTEL_*` variable of, within `timeout`.
    fn get(&self, namespace: &str, name: &str, prefixes: &[String], timeout: Duration) -> BoxFuture<'static, Found>;
}

type Key = (String, String, Vec<String>);

/// ConfigMaps from the API server, cached.
pub struct Cached {
    client: kube::Client,
    cache: Arc<Mutex<HashMap<Key, (Instant, Found)>>>,
}

impl Cached {
    /// A source reading through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client, cache: Arc::default() }
    }
}

impl ConfigMapSource for Cached {
    fn get(&self, namespace: &str, name: &str, prefixes: &[String], timeout: Duration) -> BoxFuture<'static, Found> {
        let key = (namespace.to_owned(), name.to_owned(), prefixes.to_vec());
        if let Some((at, found)) = self.cache.lock().expect("cache").get(&key)
            && at.elapsed() < TTL
        {
            return futures::future::ready(found.clone()).boxed();
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let cache = self.cache.clone();
        async move {
            let found = match tokio::time::timeout(timeout, api.get_opt(&key.1)).await {
                Err(_) => return Found::Unknown(format!("no answer within {timeout:?}")),
                Ok(Err(kube::Error::Api(status))) => {
                    return Found::Unknown(format!("{} ({})", status.reason, status.code));
                }
                Ok(Err(e)) => return Found::Unknown(e.to_string()),
                Ok(Ok(None)) => Found::Missing,
                Ok(Ok(Some(map))) => keep(map.data.unwrap_or_default(), &key.2),
            };
            let mut cache = cache.lock().expect("cache");
            if cache.len() >= CAPACITY
                && let Some(oldest) = cache.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
            cache.insert(key, (Instant::now(), found.clone()));
            found
        }
        .boxed()
    }
}

/// What the engine reads of a ConfigMap's data drawn with `prefixes`: the keys one of them makes an `OTEL_*`
/// variable of.
pub(crate) fn keep(data: BTreeMap<String, String>, prefixes: &[String]) -> Found {
    let mut bytes = 0;
    let mut kept = BTreeMap::new();
    for (key, value) in data {
        if !prefixes.iter().any(|p| format!("{p}{key}").starts_with("OTEL_")) {
            continue;
        }
        bytes += key.len() + value.len();
        if bytes > ENTRY_BYTES {
            return Found::Unknown(format!("its OTEL_* variables are over {} KiB", ENTRY_BYTES / 1024));
        }
        kept.insert(key, value);
    }
    Found::Data(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_becomes_an_otel_variable_is_kept_and_within_a_bound() {
        let data: BTreeMap<String, String> =
            [("OTEL_SERVICE_NAME", "a"), ("DB_PASSWORD_HINT", "x"), ("SERVICE_NAME", "b")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into();
        let names = |found: Found| match found {
            Found::Data(d) => d.into_keys().collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let prefixes = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(names(keep(data.clone(), &prefixes(&[""]))), ["OTEL_SERVICE_NAME"]);
        let both = names(keep(data, &prefixes(&["", "OTEL_"])));
        assert_eq!(both, ["DB_PASSWORD_HINT", "OTEL_SERVICE_NAME", "SERVICE_NAME"]);
        let big: BTreeMap<String, String> = [("OTEL_X".to_owned(), "v".repeat(ENTRY_BYTES))].into();
        assert!(matches!(keep(big, &prefixes(&[""])), Found::Unknown(_)));
    }
}
