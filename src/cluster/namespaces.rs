//! Where namespace labels and annotations come from: a source the admission path reads without blocking.

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::policy::NamespaceMeta;

/// A non-blocking view of the cluster's namespaces (a watched cache in a cluster, a fixed map elsewhere).
pub trait Namespaces: Send + Sync {
    /// The namespace's metadata, if known.
    fn get(&self, name: &str) -> Option<Arc<NamespaceMeta>>;
    /// Whether the source has caught up with the cluster (gates `/readyz`).
    fn synced(&self) -> bool;
    /// How many namespaces it holds.
    fn len(&self) -> usize;
    /// Whether it holds none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A fixed set of namespaces: empty without a cluster (namespace policy is then empty), or given by tests.
#[derive(Debug, Clone, Default)]
pub struct Fixed(HashMap<String, Arc<NamespaceMeta>>);

impl Fixed {
    /// A source holding exactly these namespaces.
    pub fn new(namespaces: impl IntoIterator<Item = (String, NamespaceMeta)>) -> Self {
        Self(namespaces.into_iter().map(|(k, v)| (k, Arc::new(v))).collect())
    }
}

impl Namespaces for Fixed {
    fn get(&self, name: &str) -> Option<Arc<NamespaceMeta>> {
        self.0.get(name).cloned()
    }

    fn synced(&self) -> bool {
        true
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_namespaces_answer_and_are_synced() {
        let meta = NamespaceMeta { annotations: [("a".into(), "b".into())].into(), ..NamespaceMeta::default() };
        let fixed = Fixed::new([("shop".to_owned(), meta.clone())]);
        assert_eq!(fixed.get("shop").as_deref(), Some(&meta));
        assert_eq!(fixed.get("other"), None);
        assert!(fixed.synced());
        assert_eq!(fixed.len(), 1);
        assert!(Fixed::default().is_empty());
    }
}
