//! What the webhook learns from the cluster: namespace labels and annotations.

pub mod namespaces;
