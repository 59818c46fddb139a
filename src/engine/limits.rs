//! What one object may ask of the engine (docs/operations.md, "Limits of one object"): the numbers alone, checked
//! by [`crate::engine::inject::over_limit`] and the object view. Whoever may create a pod decides what the webhook
//! reads, so the work per review and the size of its answer are bounded whatever the object holds. No real
//! workload comes near these numbers; an object beyond them is admitted unchanged, with a warning saying which
//! limit, and counted (`reason="over_limit"`).

/// Containers and init containers of one object.
pub const CONTAINERS: usize = 100;

/// Entries in one container's `env`.
pub const ENV_ENTRIES: usize = 1000;

/// `envFrom` sources of one container whose ConfigMaps are read (more: the container is left unchanged, as over a
/// limit).
pub const ENV_FROM: usize = 20;

/// Bytes of one `OTEL_*` value the engine reads (and may rewrite, e.g. a user's `OTEL_RESOURCE_ATTRIBUTES`).
pub const ENV_VALUE_BYTES: usize = 64 * 1024;

/// Resource attributes from the config and annotations (more are ignored, with a warning).
pub const ATTRIBUTES: usize = 128;

/// Characters of one value the webhook writes as `service.name` or a resource attribute (longer ones are not
/// used, with a warning: strict SDKs drop a whole attribute list for one value over 255 characters).
pub const VALUE_CHARS: usize = 255;

/// Bytes of the JSON Patch of one object.
pub const PATCH_BYTES: usize = 1024 * 1024;

/// Warnings in one answer (the rest are counted in a last one).
pub const WARNINGS: usize = 10;

/// Whether a value the webhook would write is short enough to use.
pub(crate) fn value_fits(value: &str) -> bool {
    value.len() <= VALUE_CHARS || value.chars().count() <= VALUE_CHARS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_counted_in_characters() {
        assert!(value_fits(&"é".repeat(VALUE_CHARS)));
        assert!(!value_fits(&"e".repeat(VALUE_CHARS + 1)));
    }
}
