//! What the webhook learns from the cluster: the connection, namespace labels and annotations (a watched cache),
//! and the API server's version.

pub mod client;
pub mod namespaces;
pub mod snapshot;
pub mod version;
