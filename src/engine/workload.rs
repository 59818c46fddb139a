//! The kinds of object the webhook instruments, where their pod template lives, and which workloads own a pod.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An object kind that carries a pod spec: a Pod itself or a workload with a pod template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// `v1/Pod`.
    Pod,
    /// `apps/v1/Deployment`.
    Deployment,
    /// `apps/v1/StatefulSet`.
    StatefulSet,
    /// `apps/v1/DaemonSet`.
    DaemonSet,
    /// `apps/v1/ReplicaSet`.
    ReplicaSet,
    /// `batch/v1/Job`.
    Job,
    /// `batch/v1/CronJob`.
    CronJob,
}

impl WorkloadKind {
    /// Every kind, in the order the SPEC lists them.
    pub const ALL: [WorkloadKind; 7] =
        [Self::Pod, Self::Deployment, Self::StatefulSet, Self::DaemonSet, Self::ReplicaSet, Self::Job, Self::CronJob];

    /// The kind for an API group (`""`, `apps`, `batch`) and kind name, if it is one we handle.
    pub(crate) fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        match (group, kind) {
            ("", "Pod") => Some(Self::Pod),
            ("apps", "Deployment") => Some(Self::Deployment),
            ("apps", "StatefulSet") => Some(Self::StatefulSet),
            ("apps", "DaemonSet") => Some(Self::DaemonSet),
            ("apps", "ReplicaSet") => Some(Self::ReplicaSet),
            ("batch", "Job") => Some(Self::Job),
            ("batch", "CronJob") => Some(Self::CronJob),
            _ => None,
        }
    }

    /// The API group, version and resource (plural) this kind is served under.
    pub fn api_resource(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Pod => ("", "v1", "pods"),
            Self::Deployment => ("apps", "v1", "deployments"),
            Self::StatefulSet => ("apps", "v1", "statefulsets"),
            Self::DaemonSet => ("apps", "v1", "daemonsets"),
            Self::ReplicaSet => ("apps", "v1", "replicasets"),
            Self::Job => ("batch", "v1", "jobs"),
            Self::CronJob => ("batch", "v1", "cronjobs"),
        }
    }

    /// The `apiVersion` current Kubernetes serves this kind under (`v1`, `apps/v1`, `batch/v1`).
    pub fn api_version(self) -> &'static str {
        match self.api_resource() {
            ("", _, _) => "v1",
            ("apps", _, _) => "apps/v1",
            _ => "batch/v1",
        }
    }

    /// The kind for an object's `apiVersion` and `kind` fields.
    pub fn from_type_meta(api_version: &str, kind: &str) -> Option<Self> {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        Self::from_group_kind(group, kind)
    }

    /// The kind's name, as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "Pod",
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::ReplicaSet => "ReplicaSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
        }
    }

    /// JSON Pointer tokens from the object's root to its pod template (empty for a Pod).
    pub fn template_path(self) -> &'static [&'static str] {
        match self {
            Self::Pod => &[],
            Self::CronJob => &["spec", "jobTemplate", "spec", "template"],
            _ => &["spec", "template"],
        }
    }

    /// Whether an UPDATE of this kind may be mutated (a Pod's spec is immutable).
    pub(crate) fn mutable_on_update(self) -> bool {
        self != Self::Pod
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The names of the workloads a pod belongs to, as far as they can be told without an API call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owners {
    /// The owning Deployment.
    pub deployment: Option<String>,
    /// The owning Argo Rollout.
    pub rollout: Option<String>,
    /// The owning ReplicaSet.
    pub replicaset: Option<String>,
    /// The owning StatefulSet.
    pub statefulset: Option<String>,
    /// The owning DaemonSet.
    pub daemonset: Option<String>,
    /// The owning Job.
    pub job: Option<String>,
    /// The owning CronJob.
    pub cronjob: Option<String>,
}

/// One `metadata.ownerReferences` entry, reduced to what owner resolution needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OwnerRef<'a> {
    /// The owner's kind.
    pub kind: &'a str,
    /// The owner's name.
    pub name: &'a str,
    /// Whether it is the managing controller.
    pub controller: bool,
}

impl Owners {
    /// Owners of a Pod, from its controller reference (or first reference) and its labels.
    pub(crate) fn of_pod(refs: &[OwnerRef<'_>], label: impl Fn(&str) -> Option<String>) -> Self {
        let mut owners = Self::default();
        let Some(owner) = refs.iter().find(|r| r.controller).or(refs.first()) else {
            return owners;
        };
        let name = owner.name.to_owned();
        match owner.kind {
            "ReplicaSet" => {
                if let Some(rollout) = strip_hash(&name, label("rollouts-pod-template-hash")) {
                    owners.rollout = Some(rollout);
                } else if let Some(deployment) = strip_hash(&name, label("pod-template-hash")) {
                    owners.deployment = Some(deployment);
                }
                owners.replicaset = Some(name);
            }
            "Job" => {
                owners.cronjob = cronjob_of_job(&name);
                owners.job = Some(name);
            }
            "StatefulSet" => owners.statefulset = Some(name),
            "DaemonSet" => owners.daemonset = Some(name),
            _ => {}
        }
        owners
    }

    /// Owners of a workload's pod template: the workload itself and its own controller reference.
    pub(crate) fn of_workload(kind: WorkloadKind, name: Option<&str>, refs: &[OwnerRef<'_>]) -> Self {
        let mut owners = Self::default();
        let Some(name) = name.filter(|n| !n.is_empty()).map(str::to_owned) else {
            return owners;
        };
        let owner = refs.iter().find(|r| r.controller).or(refs.first());
        let owner_named = |kind: &str| owner.filter(|o| o.kind == kind).map(|o| o.name.to_owned());
        match kind {
            WorkloadKind::Pod => {}
            WorkloadKind::Deployment => owners.deployment = Some(name),
            WorkloadKind::StatefulSet => owners.statefulset = Some(name),
            WorkloadKind::DaemonSet => owners.daemonset = Some(name),
            WorkloadKind::CronJob => owners.cronjob = Some(name),
            WorkloadKind::ReplicaSet => {
                owners.deployment = owner_named("Deployment");
                owners.rollout = owner_named("Rollout");
                owners.replicaset = Some(name);
            }
            WorkloadKind::Job => {
                owners.cronjob = owner_named("CronJob");
                owners.job = Some(name);
            }
        }
        owners
    }

    /// The top-level workload's kind and name, the one a service is named after.
    pub(crate) fn primary(&self) -> Option<(&'static str, &str)> {
        [
            ("Deployment", &self.deployment),
            ("Rollout", &self.rollout),
            ("StatefulSet", &self.statefulset),
            ("DaemonSet", &self.daemonset),
            ("CronJob", &self.cronjob),
            ("Job", &self.job),
            ("ReplicaSet", &self.replicaset),
        ]
        .into_iter()
        .find_map(|(kind, name)| name.as_deref().map(|n| (kind, n)))
    }

    /// The OpenTelemetry semantic-convention attributes that name a pod's owners, in the order of [`Self::attributes`].
    pub const KEYS: [&'static str; 6] = [
        "k8s.deployment.name",
        "k8s.replicaset.name",
        "k8s.statefulset.name",
        "k8s.daemonset.name",
        "k8s.cronjob.name",
        "k8s.job.name",
    ];

    /// The OpenTelemetry semantic-convention attributes naming these workloads, in a fixed order.
    pub fn attributes(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let names = [&self.deployment, &self.replicaset, &self.statefulset, &self.daemonset, &self.cronjob, &self.job];
        Self::KEYS.into_iter().zip(names).filter_map(|(key, name)| name.as_deref().map(|n| (key, n)))
    }
}

/// `name` minus a `-<hash>` suffix, when the hash label is present and the name ends with it.
fn strip_hash(name: &str, hash: Option<String>) -> Option<String> {
    let hash = hash.filter(|h| !h.is_empty())?;
    let stem = name.strip_suffix(hash.as_str())?.strip_suffix('-')?;
    (!stem.is_empty()).then(|| stem.to_owned())
}

/// The fewest digits of a CronJob's Job suffix: its scheduled time in minutes since the epoch, which has had eight
/// digits since 1989 (the controller names Jobs `<cronjob>-<minutes>`), so `db-migrate-2` is not a CronJob's.
const CRONJOB_SUFFIX_DIGITS: usize = 8;

/// The CronJob name behind a Job the CronJob controller created: `<cronjob>-<scheduled minutes since the epoch>`.
fn cronjob_of_job(job: &str) -> Option<String> {
    let (stem, suffix) = job.rsplit_once('-')?;
    let minutes = suffix.len() >= CRONJOB_SUFFIX_DIGITS && suffix.bytes().all(|b| b.is_ascii_digit());
    (minutes && !stem.is_empty()).then(|| stem.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn owner(kind: &'static str, name: &'static str) -> OwnerRef<'static> {
        OwnerRef { kind, name, controller: true }
    }

    #[rstest]
    #[case("v1", "Pod", Some(WorkloadKind::Pod))]
    #[case("apps/v1", "Deployment", Some(WorkloadKind::Deployment))]
    #[case("apps/v1", "StatefulSet", Some(WorkloadKind::StatefulSet))]
    #[case("apps/v1", "DaemonSet", Some(WorkloadKind::DaemonSet))]
    #[case("apps/v1", "ReplicaSet", Some(WorkloadKind::ReplicaSet))]
    #[case("batch/v1", "Job", Some(WorkloadKind::Job))]
    #[case("batch/v1", "CronJob", Some(WorkloadKind::CronJob))]
    #[case("batch/v1beta1", "CronJob", Some(WorkloadKind::CronJob))]
    #[case("v1", "Service", None)]
    #[case("example.com/v1", "Deployment", None)]
    fn kinds_from_type_meta(#[case] api: &str, #[case] kind: &str, #[case] want: Option<WorkloadKind>) {
        assert_eq!(WorkloadKind::from_type_meta(api, kind), want);
    }

    #[test]
    fn template_paths() {
        assert!(WorkloadKind::Pod.template_path().is_empty());
        assert_eq!(WorkloadKind::Deployment.template_path(), ["spec", "template"]);
        assert_eq!(WorkloadKind::CronJob.template_path(), ["spec", "jobTemplate", "spec", "template"]);
    }

    #[test]
    fn deployment_from_replicaset_minus_pod_template_hash() {
        let labels = |k: &str| (k == "pod-template-hash").then(|| "849b87649d".to_owned());
        let owners = Owners::of_pod(&[owner("ReplicaSet", "echo-849b87649d")], labels);
        assert_eq!(owners.deployment.as_deref(), Some("echo"));
        assert_eq!(owners.replicaset.as_deref(), Some("echo-849b87649d"));
        assert_eq!(owners.primary(), Some(("Deployment", "echo")));
    }

    #[test]
    fn rollout_from_replicaset_minus_rollouts_hash() {
        let labels = |k: &str| (k == "rollouts-pod-template-hash").then(|| "6b9f".to_owned());
        let owners = Owners::of_pod(&[owner("ReplicaSet", "canary-6b9f")], labels);
        assert_eq!(owners.rollout.as_deref(), Some("canary"));
        assert_eq!(owners.deployment, None);
        assert_eq!(owners.primary(), Some(("Rollout", "canary")));
    }

    #[test]
    fn bare_replicaset_keeps_its_name() {
        let owners = Owners::of_pod(&[owner("ReplicaSet", "frontend")], |_| None);
        assert_eq!(owners.primary(), Some(("ReplicaSet", "frontend")));
    }

    #[rstest]
    #[case("hello-27890123", Some("hello"), Some(("CronJob", "hello")))]
    #[case("pi", None, Some(("Job", "pi")))]
    #[case("migrate-v2", None, Some(("Job", "migrate-v2")))]
    // 9. The CronJob controller names Jobs `<cronjob>-<scheduled minutes since the epoch>` (8+ digits).
    #[case("db-migrate-2", None, Some(("Job", "db-migrate-2")))]
    #[case("backup-2024", None, Some(("Job", "backup-2024")))]
    #[case("nightly-29412345", Some("nightly"), Some(("CronJob", "nightly")))]
    fn job_owner(#[case] job: &'static str, #[case] cron: Option<&str>, #[case] primary: Option<(&str, &str)>) {
        let owners = Owners::of_pod(&[owner("Job", job)], |_| None);
        assert_eq!(owners.job.as_deref(), Some(job));
        assert_eq!(owners.cronjob.as_deref(), cron);
        assert_eq!(owners.primary(), primary);
    }

    #[test]
    fn statefulset_daemonset_and_unknown_owners() {
        let sts = Owners::of_pod(&[owner("StatefulSet", "db")], |_| None);
        assert_eq!(sts.primary(), Some(("StatefulSet", "db")));
        let ds = Owners::of_pod(&[owner("DaemonSet", "agent")], |_| None);
        assert_eq!(ds.primary(), Some(("DaemonSet", "agent")));
        assert_eq!(Owners::of_pod(&[owner("Bar", "x")], |_| None), Owners::default());
    }

    #[test]
    fn controller_reference_wins_over_first() {
        let refs = [
            OwnerRef { kind: "StatefulSet", name: "a", controller: false },
            OwnerRef { kind: "DaemonSet", name: "b", controller: true },
        ];
        assert_eq!(Owners::of_pod(&refs, |_| None).primary(), Some(("DaemonSet", "b")));
    }

    #[test]
    fn workload_templates_name_themselves_and_their_owner() {
        let rs = Owners::of_workload(WorkloadKind::ReplicaSet, Some("web-5d8f"), &[owner("Deployment", "web")]);
        assert_eq!(rs.deployment.as_deref(), Some("web"));
        assert_eq!(rs.replicaset.as_deref(), Some("web-5d8f"));
        let job = Owners::of_workload(WorkloadKind::Job, Some("nightly-29000000"), &[owner("CronJob", "nightly")]);
        assert_eq!(job.primary(), Some(("CronJob", "nightly")));
        let cron = Owners::of_workload(WorkloadKind::CronJob, Some("nightly"), &[]);
        assert_eq!(cron.attributes().collect::<Vec<_>>(), [("k8s.cronjob.name", "nightly")]);
        assert_eq!(Owners::of_workload(WorkloadKind::Deployment, None, &[]), Owners::default());
    }
}
