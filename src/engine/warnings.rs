//! AdmissionResponse warnings: what the user should hear about an object, each line within Kubernetes' limit.

/// Kubernetes asks warnings to stay within 120 characters.
pub(crate) const MAX_WARNING_CHARS: usize = 120;

use crate::engine::limits::WARNINGS;

/// AdmissionResponse warnings: de-duplicated, in the order they arose, each at most 120 characters, at most
/// [`WARNINGS`] of them (the rest counted in one last line: a crafted object can raise thousands).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings {
    lines: Vec<String>,
    more: usize,
}

impl Warnings {
    /// Adds a warning, cut to 120 characters, unless the same text is already there.
    pub fn push(&mut self, warning: impl Into<String>) {
        let mut warning = warning.into();
        if let Some((cut, _)) = warning.char_indices().nth(MAX_WARNING_CHARS - 1) {
            warning.truncate(cut);
            warning.push('…');
        }
        if self.lines.contains(&warning) {
            return;
        }
        if self.lines.len() < WARNINGS {
            self.lines.push(warning);
        } else {
            self.more += 1;
        }
    }

    /// The warnings kept so far.
    pub fn as_slice(&self) -> &[String] {
        &self.lines
    }

    /// How many there are, the line counting those not kept included.
    pub fn len(&self) -> usize {
        self.lines.len() + usize::from(self.more > 0)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The warnings, for the AdmissionResponse.
    pub(crate) fn into_vec(mut self) -> Vec<String> {
        if self.more > 0 {
            self.lines.push(format!("otel-injector: {} more warning(s) not shown", self.more));
        }
        self.lines
    }
}

/// Shortens a user-supplied value for a warning line.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
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

    #[test]
    fn thousands_of_warnings_are_ten_and_a_count() {
        let mut w = Warnings::default();
        (0..40_000).for_each(|i| w.push(format!("container c{i} is not here")));
        let lines = w.into_vec();
        assert_eq!(lines.len(), WARNINGS + 1);
        assert_eq!(lines[WARNINGS], "otel-injector: 39990 more warning(s) not shown");
    }
}
