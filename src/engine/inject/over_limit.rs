//! Whether an object is over one of the limits of [`crate::engine::limits`]: such an object is admitted unchanged,
//! with a warning naming the limit.

use crate::engine::keys;
use crate::engine::limits::{CONTAINERS, ENV_ENTRIES, ENV_FROM, ENV_VALUE_BYTES};
use crate::engine::pod_view::PodView;
use crate::engine::warnings::clip;

/// Which limit the object is over, if any, in a few words for a warning.
pub(crate) fn exceeded(view: &PodView<'_>) -> Option<String> {
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
        if c.env_from.len() > ENV_FROM {
            return Some(format!("container {} has over {ENV_FROM} envFrom sources", clip(&c.name)));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::workload::WorkloadKind;
    use crate::testing::fixtures::{container, pod};

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
}
