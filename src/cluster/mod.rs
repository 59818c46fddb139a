//! What the webhook learns from the cluster: the connection, namespace labels and annotations (a watched cache),
//! the ConfigMaps pods draw variables from (looked up, cached), and the API server's version.

pub mod client;
pub mod config_maps;
pub mod namespaces;
pub mod snapshot;
pub mod version;
