//! A snapshot of the cluster for the commands (`preview --from-cluster`, `audit`), read once: namespaces, the server
//! version, the config from a ConfigMap, and lists of workloads. Never a write.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PartialObjectMeta};
use serde_json::Value;

use super::client::{self, Source};
use super::namespaces::meta_of;
use crate::engine::policy::NamespaceMeta;
use crate::engine::syntax::KubeVersion;
use crate::engine::workload::WorkloadKind;

/// The key of the webhook's ConfigMap that holds the config file.
pub(crate) const CONFIG_KEY: &str = "config.yaml";

/// Objects listed per page.
const PAGE: u32 = 500;

/// A read from the cluster failed; the message says what was read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Nothing to read from.
    #[error("no cluster configured: use --kubeconfig, KUBECONFIG or ~/.kube/config")]
    NoCluster,
    /// The connection could not be set up.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// The API server refused or failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being read.
        what: String,
        /// Why it failed.
        source: kube::Error,
    },
    /// Discovery answered with a version that is not `major.minor`.
    #[error("unreadable API server version {0:?}")]
    Version(String),
    /// The ConfigMap exists but holds no config.
    #[error("ConfigMap {namespace}/{name} has no {CONFIG_KEY} key (it has: {keys})")]
    NoConfigKey {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The keys it has.
        keys: String,
    },
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ReadError {
    let what = what.into();
    move |source| ReadError::Api { what, source }
}

/// A client for the configured cluster; an error when none is configured.
pub async fn connect(source: &Source) -> Result<kube::Client, ReadError> {
    client::connect(source).await?.ok_or(ReadError::NoCluster)
}

/// The API server's version.
pub async fn server_version(client: &kube::Client) -> Result<KubeVersion, ReadError> {
    let info = client.apiserver_version().await.map_err(api_error("reading the server version"))?;
    KubeVersion::from_parts(&info.major, &info.minor)
        .or_else(|| KubeVersion::parse(&info.git_version).ok())
        .ok_or(ReadError::Version(info.git_version))
}

/// One namespace's policy metadata, or `None` when it does not exist.
pub async fn namespace(client: &kube::Client, name: &str) -> Result<Option<NamespaceMeta>, ReadError> {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    let ns = api.get_opt(name).await.map_err(api_error(format!("reading namespace {name}")))?;
    Ok(ns.as_ref().map(meta_of))
}

/// Every namespace's policy metadata.
pub async fn namespaces(client: &kube::Client) -> Result<BTreeMap<String, NamespaceMeta>, ReadError> {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    let mut out = BTreeMap::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await.map_err(api_error("listing namespaces"))?;
        for ns in &page.items {
            if let Some(name) = &ns.metadata.name {
                out.insert(name.clone(), meta_of(ns));
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// The config text of ConfigMap `namespace/name` (its `config.yaml` key, or its only key).
pub(crate) async fn config_text(client: &kube::Client, namespace: &str, name: &str) -> Result<String, ReadError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let map = api.get(name).await.map_err(api_error(format!("reading ConfigMap {namespace}/{name}")))?;
    let data = map.data.unwrap_or_default();
    match (data.get(CONFIG_KEY), data.len()) {
        (Some(text), _) => Ok(text.clone()),
        (None, 1) => Ok(data.into_values().next().unwrap_or_default()),
        _ => Err(ReadError::NoConfigKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            keys: data.keys().cloned().collect::<Vec<_>>().join(", "),
        }),
    }
}

/// What listing a kind gave.
#[derive(Debug)]
pub enum Listing {
    /// Every object, as raw JSON.
    Items(Vec<Value>),
    /// This API server does not serve the kind's API (e.g. `batch/v1` CronJob before Kubernetes 1.21).
    NotServed,
    /// The credentials may not list it: the API server's message.
    Forbidden(String),
}

/// Every object of `kind` (in `namespace`, or in all), from the kind's current API or, where this API server does
/// not serve it, an older one it may (`batch/v1beta1` CronJobs before Kubernetes 1.21).
pub async fn list(client: &kube::Client, kind: WorkloadKind, namespace: Option<&str>) -> Result<Listing, ReadError> {
    let (group, version, plural) = kind.api_resource();
    let listing = list_version(client, kind, (group, version, plural), namespace).await?;
    match (listing, kind) {
        (Listing::NotServed, WorkloadKind::CronJob) => {
            list_version(client, kind, ("batch", "v1beta1", plural), namespace).await
        }
        (listing, _) => Ok(listing),
    }
}

async fn list_version(
    client: &kube::Client,
    kind: WorkloadKind,
    (group, version, plural): (&str, &str, &str),
    namespace: Option<&str>,
) -> Result<Listing, ReadError> {
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind.as_str()), plural);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = match api.list(&params).await {
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Listing::NotServed),
            Err(kube::Error::Api(status)) if status.code == 403 => return Ok(Listing::Forbidden(status.message)),
            other => other.map_err(api_error(format!("listing {plural}")))?,
        };
        for item in page.items {
            let mut value = serde_json::to_value(&item).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.insert("apiVersion".into(), resource.api_version.clone().into());
                map.insert("kind".into(), kind.as_str().into());
            }
            out.push(value);
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(Listing::Items(out)),
        }
    }
}
