//! The connection to the Kubernetes API: in-cluster config or a kubeconfig, or none at all.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Where the cluster connection comes from.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// A kubeconfig file named explicitly (`--kubeconfig`); it must load.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of the current one.
    pub context: Option<String>,
}

/// A cluster connection was configured but cannot be used; the message says which source failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig named by `--kubeconfig`, `KUBECONFIG` or `~/.kube/config` is unusable.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file (or `KUBECONFIG`'s value).
        path: String,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// The pod's service account (in-cluster config) is unusable.
    #[error("in-cluster config (KUBERNETES_SERVICE_HOST is set): {0}")]
    InCluster(#[from] kube::config::InClusterError),
    /// The client could not be built from the config (TLS setup).
    #[error("cannot build a Kubernetes client: {0}")]
    Build(#[from] kube::Error),
}

/// Which configuration will be used, decided from the environment alone (no I/O on the files).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Chosen {
    /// An explicit kubeconfig file.
    File(PathBuf),
    /// In a pod: the service account.
    InCluster,
    /// `KUBECONFIG` or `~/.kube/config`, kubectl's way.
    Default(String),
    /// Nothing is configured.
    Nothing,
}

fn choose(source: &Source, kubeconfig_env: Option<&str>, in_cluster: bool, home_config: Option<&Path>) -> Chosen {
    if let Some(path) = &source.kubeconfig {
        Chosen::File(path.clone())
    } else if let Some(env) = kubeconfig_env.filter(|v| !v.is_empty()) {
        Chosen::Default(env.to_owned())
    } else if in_cluster {
        Chosen::InCluster
    } else if let Some(home) = home_config.filter(|p| p.is_file()) {
        Chosen::Default(home.display().to_string())
    } else {
        Chosen::Nothing
    }
}

/// A client for the configured cluster, or `None` when no cluster is configured at all (no `--kubeconfig`, no
/// `KUBECONFIG`, not in a pod, no `~/.kube/config`). A configured source that fails is an error, never a silent
/// fallback.
pub async fn connect(source: &Source) -> Result<Option<kube::Client>, ClientError> {
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube").join("config"));
    let kubeconfig_env = std::env::var("KUBECONFIG").ok();
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let options = KubeConfigOptions { context: source.context.clone(), ..KubeConfigOptions::default() };
    let wrap = |path: String| move |source| ClientError::Kubeconfig { path, source };
    let config = match choose(source, kubeconfig_env.as_deref(), in_cluster, home.as_deref()) {
        Chosen::Nothing => return Ok(None),
        Chosen::InCluster => kube::Config::incluster()?,
        Chosen::File(path) => {
            let shown = path.display().to_string();
            let file = Kubeconfig::read_from(&path).map_err(wrap(shown.clone()))?;
            kube::Config::from_custom_kubeconfig(file, &options).await.map_err(wrap(shown))?
        }
        Chosen::Default(shown) => kube::Config::from_kubeconfig(&options).await.map_err(wrap(shown))?,
    };
    Ok(Some(kube::Client::try_from(config)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_explicit_file_wins_then_kubeconfig_then_in_cluster_then_home() {
        let file = Source { kubeconfig: Some("/k".into()), context: None };
        let none = Source::default();
        let home = std::env::temp_dir(); // a directory, not a file: ignored
        assert_eq!(choose(&file, Some("/env"), true, None), Chosen::File("/k".into()));
        assert_eq!(choose(&none, Some("/env"), true, None), Chosen::Default("/env".into()));
        assert_eq!(choose(&none, Some(""), true, None), Chosen::InCluster);
        assert_eq!(choose(&none, None, false, Some(&home)), Chosen::Nothing);
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config");
        std::fs::write(&config, "").expect("write");
        assert_eq!(choose(&none, None, false, Some(&config)), Chosen::Default(config.display().to_string()));
        assert_eq!(choose(&none, None, false, None), Chosen::Nothing);
    }
}
