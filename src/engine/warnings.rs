//! AdmissionResponse warnings: what the user should hear about an object, each line within Kubernetes' limit.

/// Kubernetes asks warnings to stay within 120 characters.
pub const MAX_WARNING_CHARS: usize = 120;

/// AdmissionResponse warnings: de-duplicated, in the order they arose, each at most 120 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings(Vec<String>);

impl Warnings {
    /// Adds a warning, cut to 120 characters, unless the same text is already there.
    pub fn push(&mut self, warning: impl Into<String>) {
        let mut warning = warning.into();
        if let Some((cut, _)) = warning.char_indices().nth(MAX_WARNING_CHARS - 1) {
            warning.truncate(cut);
            warning.push('…');
        }
        if !self.0.contains(&warning) {
            self.0.push(warning);
        }
    }

    /// The warnings so far.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The warnings, for the AdmissionResponse.
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_deduplicated_and_cut_to_120_characters() {
        let mut w = Warnings::default();
        w.push("same");
        w.push("same");
        w.push("é".repeat(300));
        assert_eq!(w.len(), 2);
        assert_eq!(w.as_slice()[1].chars().count(), 120);
        assert!(w.as_slice()[1].ends_with('…'));
    }
}
