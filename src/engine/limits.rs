//! What one object may ask of the engine (docs/operations.md, "Limits of one object"). Whoever may create a pod decides what the webhook
//! reads, so the work per review and the size of its answer are bounded whatever the object holds. No real
//! workload comes near these numbers; an object beyond them is admitted unchanged, with a warning saying which
//! limit, and counted (`reason="over_limit"`).

use crate::engine::object::PodView;
use crate::engine::policy::keys;

/// Containers and init containers of one object.
pub const CONTAINERS: usize = 100;

/// Entries in one container's `env`.
pub const ENV_ENTRIES: usize = 1000;

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

/// Which limit the object is over, if any, in a few words for a warning.
pub fn exceeded(view: &PodView<'_>) -> Option<String> {
    let containers = view.container_count;
    if containers > CONTAINERS {
        return Some(format!("{containers} containers, over the limit of {CONTAINERS}"));
    }
    let named = view
        .annotation(keys::CONTAINER_NAMES)
        .map_or(0, |names| names.split(',').filter(|n| !n.trim().is_empty()).count());
    if named > CONTAINERS {
        return Some(format!("{} names {named} containers, over the limit of {CONTAINERS}", keys::CONTAINER_NAMES));
    }
    for c in view.containers.iter().chain(&view.init_containers) {
        let Some(env) = &c.env else { continue };
        if env.len() > ENV_ENTRIES {
            return Some(format!(
                "container {} has {} env entries, over the limit of {ENV_ENTRIES}",
                clip(&c.name),
                env.len()
            ));
        }
        if let Some((_, e)) = env.entries().find(|(_, e)| e.value.as_ref().is_some_and(|v| v.len() > ENV_VALUE_BYTES)) {
            return Some(format!(
                "container {} sets {} to over {} KiB",
                clip(&c.name),
                clip(&e.name),
                ENV_VALUE_BYTES / 1024
            ));
        }
    }
    None
}

/// Whether a value the webhook would write is short enough to use.
pub fn value_fits(value: &str) -> bool {
    value.len() <= VALUE_CHARS || value.chars().count() <= VALUE_CHARS
}

fn clip(s: &str) -> String {
    crate::engine::policy::clip(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::workload::WorkloadKind;
    use crate::fixtures::{container, pod};

    fn over(object: serde_json::Value) -> Option<String> {
        let json = object.to_string();
        exceeded(&PodView::parse(&json, WorkloadKind::Pod).expect("valid"))
    }

    #[test]
    fn objects_within_the_limits_pass() {
        let object = (0..CONTAINERS).fold(pod("p"), |p, i| p.container(container(&format!("c{i}")))).build();
        assert_eq!(over(object), None);
        let env = (1..ENV_ENTRIES).fold(container("app"), |c, i| c.env(&format!("V{i}"), "1"));
        assert_eq!(over(pod("p").container(env.env("OTEL_X", &"x".repeat(ENV_VALUE_BYTES))).build()), None);
    }

    #[test]
    fn each_limit_names_itself() {
        let wide = (0..=CONTAINERS).fold(pod("p"), |p, i| p.container(container(&format!("c{i}")))).build();
        assert_eq!(over(wide).as_deref(), Some("101 containers, over the limit of 100"));
        let long = (0..=ENV_ENTRIES).fold(container("app"), |c, i| c.env(&format!("V{i}"), "1"));
        assert_eq!(
            over(pod("p").container(long).build()).as_deref(),
            Some("container app has 1001 env entries, over the limit of 1000")
        );
        let names = (0..=CONTAINERS).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(
            over(pod("p").annotation(keys::CONTAINER_NAMES, &names).container(container("c0")).build()).as_deref(),
            Some("otel-injector.io/container-names names 101 containers, over the limit of 100")
        );
        let big = container("app").env("OTEL_RESOURCE_ATTRIBUTES", &"x".repeat(ENV_VALUE_BYTES + 1));
        assert_eq!(
            over(pod("p").container(big).build()).as_deref(),
            Some("container app sets OTEL_RESOURCE_ATTRIBUTES to over 64 KiB")
        );
    }

    #[test]
    fn values_are_counted_in_characters() {
        assert!(value_fits(&"é".repeat(VALUE_CHARS)));
        assert!(!value_fits(&"e".repeat(VALUE_CHARS + 1)));
    }
}
