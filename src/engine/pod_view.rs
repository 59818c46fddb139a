//! A read-only view of an object's pod template, deserialized straight from the JSON the API server sent.
//!
//! Lean by design: strings are borrowed from the request bytes wherever they need no unescaping, every field the
//! engine never reads (`managedFields`, `status`, volumes, …) is skipped without being stored, and of an `env`
//! list only its length and the entries the engine reads are kept (each entry is still checked); the list itself
//! stays a raw slice for the rare rebuild. Nothing here is re-serialised: patches are built from
//! pointers against the raw JSON, so fields unknown to any typed model stay exactly as they were.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::engine::keys;
use crate::engine::limits;
use crate::engine::workload::{OwnerRef, Owners, WorkloadKind};

mod shapes;
pub(crate) use shapes::Obj;
pub use shapes::S;
use shapes::*;

/// A string from the JSON: borrowed when it has no escapes, owned otherwise.
pub type Str<'a> = Cow<'a, str>;

/// The object does not have the shape of its kind; the message names the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} {problem}")]
pub struct ShapeError {
    /// Dotted path to the offending field, e.g. `spec.containers[0].env`.
    pub path: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn shape(path: impl Into<String>, problem: &'static str) -> ShapeError {
    ShapeError { path: path.into(), problem }
}

/// One `env` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar<'a> {
    /// The variable name.
    pub name: Str<'a>,
    /// Its literal `value`, if it has one.
    pub value: Option<Str<'a>>,
    /// Whether it is set through `valueFrom`.
    pub value_from: bool,
}

/// One container of the pod spec.
#[derive(Debug, Clone)]
pub struct Container<'a> {
    /// Its index in `containers` or `initContainers`.
    pub index: usize,
    /// Its name.
    pub name: Str<'a>,
    /// Its image, if set.
    pub image: Option<Str<'a>>,
    /// Its `env`, or `None` when the field is absent or null.
    pub env: Option<Env<'a>>,
    /// Every `containerPort` it declares.
    pub ports: Vec<i64>,
    /// Its `resources`, when set.
    pub resources: Option<Resources>,
    /// Its `restartPolicy` (an init container with `Always` is a sidecar, running beside the others).
    pub restart_policy: Option<Str<'a>>,
    /// Its `envFrom` sources, in order (at most [`limits::ENV_FROM`] + 1 kept).
    pub env_from: Vec<EnvSource<'a>>,
    /// Of its `volumeMounts`, those of an agent's volume or at an agent's path, as (index, volume, mount path);
    /// `None` when the field is absent or null.
    pub volume_mounts: Option<Vec<(usize, Str<'a>, Str<'a>)>>,
    /// The languages whose agent its `command` or `args` already loads, one bit per entry of
    /// [`crate::engine::config::LANGUAGES`].
    pub launches: u8,
}

/// What an `envFrom` entry draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvSourceKind {
    /// A ConfigMap (`configMapRef`).
    ConfigMap,
    /// A Secret (`secretRef`), which the webhook never reads.
    Secret,
}

/// One `envFrom` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSource<'a> {
    /// ConfigMap or Secret.
    pub kind: EnvSourceKind,
    /// Its name.
    pub name: Str<'a>,
    /// The `prefix` put before each of its keys.
    pub prefix: Str<'a>,
    /// Whether the pod starts without it.
    pub optional: bool,
}

/// Compute resources (`requests`, `limits`) as the quantities' text, by resource name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// `requests`.
    pub requests: Vec<(String, String)>,
    /// `limits`.
    pub limits: Vec<(String, String)>,
}

impl Resources {
    /// What the scheduler counts for `resource`: the request, else the limit (which the API server defaults a
    /// missing request to), as a number.
    pub fn counted(&self, resource: &str) -> Option<f64> {
        crate::engine::syntax::quantity(self.text(resource)?)
    }

    /// The text of what the scheduler counts for `resource` (see [`Resources::counted`]).
    pub fn text(&self, resource: &str) -> Option<&str> {
        fn find<'r>(list: &'r [(String, String)], resource: &str) -> Option<&'r str> {
            list.iter().find(|(k, _)| k == resource).map(|(_, v)| v.as_str())
        }
        find(&self.requests, resource).or_else(|| find(&self.limits, resource))
    }
}

impl Container<'_> {
    /// The env entry with this name, if defined (the last one wins, as in the kubelet); `name` must be one the
    /// engine reads ([`engine_reads`]).
    pub(crate) fn env_var(&self, name: &str) -> Option<&EnvVar<'_>> {
        let env = self.env.as_ref()?;
        env.get(env.last(name)?)
    }
}

/// Whether the engine ever reads an env variable of this name: the OpenTelemetry ones, the sidecar's `GOMEMLIMIT`,
/// and those that activate a language agent (or preload one). Entries with other names are counted and checked, not
/// kept.
pub(crate) fn engine_reads(name: &str) -> bool {
    name.starts_with("OTEL_")
        || matches!(name, "GOMEMLIMIT" | "LD_PRELOAD")
        || crate::engine::config::LANGUAGES.iter().any(|l| l.var == name)
}

/// Whether the engine ever reads a label of this key: the policy's own, and those naming the service and its
/// owners. The others are counted and checked, not kept.
pub(crate) fn engine_reads_label(key: &str) -> bool {
    matches!(
        key,
        keys::INJECT
            | "app.kubernetes.io/name"
            | "app.kubernetes.io/version"
            | "pod-template-hash"
            | "rollouts-pod-template-hash"
    )
}

/// Whether the engine ever reads an annotation of this key: one of its own ([`keys::ALL`]), an agent's (ours or the
/// OpenTelemetry Operator's), or a resource attribute (of which at most [`limits::ATTRIBUTES`] are used).
pub(crate) fn engine_reads_annotation(key: &str) -> bool {
    keys::ALL.contains(&key)
        || is_attribute(key)
        || crate::engine::config::LANGUAGES.iter().any(|l| l.key == key || l.operator_key == key)
}

fn is_attribute(key: &str) -> bool {
    key.starts_with(keys::RESOURCE_PREFIX)
}

/// A container's `env` list: its length, and the entries the engine reads (by name, or because their value refers
/// to such a variable with `$(…)`) with their indexes. The whole list, as sent, is [`PodView::raw_env`].
#[derive(Debug, Clone)]
pub struct Env<'a> {
    len: usize,
    read: Vec<(usize, EnvVar<'a>)>,
}

impl<'a> Env<'a> {
    /// Number of entries in the list.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry at index `i`, if it is one the engine reads.
    pub fn get(&self, i: usize) -> Option<&EnvVar<'a>> {
        self.read.binary_search_by_key(&i, |(at, _)| *at).ok().map(|k| &self.read[k].1)
    }

    /// Index of the first entry named `name` (one the engine reads).
    pub fn first(&self, name: &str) -> Option<usize> {
        self.read.iter().find(|(_, e)| e.name == name).map(|(i, _)| *i)
    }

    /// Index of the last entry named `name` (one the engine reads).
    pub fn last(&self, name: &str) -> Option<usize> {
        self.read.iter().rev().find(|(_, e)| e.name == name).map(|(i, _)| *i)
    }

    /// The entries the engine reads, with their indexes, in order.
    pub fn entries(&self) -> impl Iterator<Item = (usize, &EnvVar<'a>)> {
        self.read.iter().map(|(i, e)| (*i, e))
    }
}

/// Reads an `env` list in one pass, every entry deserialized where it stands and only those the engine reads kept;
/// fails on the first entry that is not a valid env var (then reading again with the path tracked names it).
struct EnvRead<'a> {
    len: usize,
    read: Vec<(usize, EnvVar<'a>)>,
}

impl<'de: 'a, 'a> Deserialize<'de> for EnvRead<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Read<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Read<'a> {
            type Value = EnvRead<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of env vars")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut env = EnvRead { len: 0, read: Vec::new() };
                while let Some(Obj(entry)) = seq.next_element::<Obj<EnvEntry<'a>>>()? {
                    let i = env.len;
                    env.len += 1;
                    // `$` found with memchr: most values have none, and a substring search costs more to start.
                    let refers = entry
                        .value
                        .as_ref()
                        .is_some_and(|v| v.0.match_indices('$').any(|(at, _)| v.0[at..].starts_with("$(OTEL_")));
                    // One more than the limit is enough to know a list is over it.
                    if (engine_reads(&entry.name.0) || refers) && env.read.len() <= limits::ENV_ENTRIES {
                        let value = entry.value.map(|s| s.0);
                        env.read
                            .push((i, EnvVar { name: entry.name.0, value, value_from: entry.value_from.is_some() }));
                    }
                }
                Ok(env)
            }
        }
        d.deserialize_seq(Read(std::marker::PhantomData))
    }
}

/// The pod template of an object (the object itself for a Pod), as read from the raw JSON.
#[derive(Debug, Clone)]
pub struct PodView<'a> {
    /// The object's kind.
    pub kind: WorkloadKind,
    /// Pointer tokens from the object root to the template.
    pub base: &'static [&'static str],
    /// Whether the template has a `metadata` object.
    pub has_metadata: bool,
    /// The template's labels the engine reads ([`engine_reads_label`]; `None` when absent).
    pub labels: Option<Vec<(Str<'a>, Str<'a>)>>,
    /// The template's annotations the engine reads ([`engine_reads_annotation`]; `None` when absent).
    pub annotations: Option<Vec<(Str<'a>, Str<'a>)>>,
    /// The object's `metadata.name`.
    pub name: Option<Str<'a>>,
    /// The object's `metadata.generateName`.
    pub generate_name: Option<Str<'a>>,
    /// The object's `metadata.namespace`.
    pub namespace: Option<Str<'a>>,
    /// The workloads that own the pod, as far as the object tells.
    pub owners: Owners,
    /// The object's managing controller (`ownerReferences` entry with `controller: true`), as kind and name.
    pub controller: Option<(Str<'a>, Str<'a>)>,
    /// `spec.containers`.
    pub containers: Vec<Container<'a>>,
    /// `spec.initContainers`.
    pub init_containers: Vec<Container<'a>>,
    /// How many containers and init containers there are (of each list, only one more than
    /// [`limits::CONTAINERS`] is kept).
    pub container_count: usize,
    /// The bytes of all the template's annotations, keys and values (of which only those the engine reads are
    /// kept).
    pub annotation_bytes: usize,
    /// `resource.opentelemetry.io/` annotations not kept (beyond one more than [`limits::ATTRIBUTES`]).
    pub attributes_not_kept: usize,
    /// Whether `spec.initContainers` is present (a list, possibly empty).
    pub has_init_containers: bool,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `spec.restartPolicy`.
    pub restart_policy: Option<Str<'a>>,
    /// `spec.resources` (pod-level resources), when set.
    pub resources: Option<Resources>,
    /// `spec.os.name`, when set.
    pub os: Option<Str<'a>>,
    /// Of the pod spec's volumes, those named as an agent's, as (index, name); `None` when `volumes` is absent or
    /// null.
    pub volumes: Option<Vec<(usize, Str<'a>)>>,
    /// The pod template's JSON text, as sent (what an UPDATE compares, and where a rebuilt env list comes from).
    pub template: &'a str,
}

impl<'a> PodView<'a> {
    /// Reads the pod template of the object whose JSON is `json`, checking every field the engine relies on.
    pub fn parse(json: &'a str, kind: WorkloadKind) -> Result<Self, ShapeError> {
        let base = kind.template_path();
        let prefix = base.join(".");
        let (meta, template_json, template): (ObjectMeta<'a>, &'a str, Template<'a>) = if kind == WorkloadKind::Pod {
            let Obj(pod): Obj<Template<'a>> = typed(json, "")?;
            let meta = ObjectMeta::of(pod.metadata.as_ref().map(|m| &m.0));
            (meta, json, pod)
        } else {
            let Obj(object): Obj<Workload<'a>> = typed(json, "")?;
            let mut raw = object.spec.map(|s| s.0);
            for (depth, token) in base.iter().enumerate().skip(1) {
                let path = base[..depth].join(".");
                let level = raw.ok_or_else(|| shape(&path, "is missing: no pod template to instrument"))?;
                raw = field(level, token, &path)?;
            }
            let raw = raw.ok_or_else(|| shape(base.join("."), "is missing: no pod template to instrument"))?;
            let Obj(template): Obj<Template<'a>> = typed(raw.get(), &prefix)?;
            (ObjectMeta::of_workload(object.metadata.map(|m| m.0)), raw.get(), template)
        };
        Self::build(kind, meta, template, template_json)
    }

    fn build(
        kind: WorkloadKind,
        meta: ObjectMeta<'a>,
        template: Template<'a>,
        template_json: &'a str,
    ) -> Result<Self, ShapeError> {
        let base = kind.template_path();
        let prefix = base.join(".");
        let at = |field: &str| if prefix.is_empty() { field.to_owned() } else { format!("{prefix}.{field}") };
        let has_metadata = template.metadata.is_some();
        let (labels, annotations) = match template.metadata {
            Some(Obj(m)) => (m.labels, m.annotations),
            None => (None, None),
        };
        let annotation_bytes = annotations.as_ref().map_or(0, |a| a.bytes);
        let attributes_not_kept = annotations.as_ref().map_or(0, |a| a.attributes_not_kept);
        let (labels, annotations) = (labels.map(|l| l.entries), annotations.map(|a| a.entries));
        let Obj(spec) = template.spec.ok_or_else(|| shape(at("spec"), "is missing: no pod spec to instrument"))?;
        let app = spec.containers.ok_or_else(|| shape(at("spec.containers"), "is missing"))?;
        let has_init_containers = spec.init_containers.is_some();
        let init = spec.init_containers.unwrap_or(Bounded { kept: Vec::new(), len: 0 });
        let container_count = app.len + init.len;
        let containers = app
            .kept
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.0.read(i, || at(&format!("spec.containers[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let init_containers = init
            .kept
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.0.read(i, || at(&format!("spec.initContainers[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;

        if let Some((list, i, first)) = duplicate_name(&init_containers, &containers) {
            let path = format!("{} {first:?}", at(&format!("spec.{list}[{i}].name")));
            return Err(ShapeError { path, problem: "repeats another container's name (names must be unique)" });
        }
        let refs: Vec<OwnerRef<'_>> = meta
            .owner_references
            .iter()
            .map(|r| OwnerRef {
                kind: r.kind.as_deref().unwrap_or_default(),
                name: r.name.as_deref().unwrap_or_default(),
                controller: r.controller.unwrap_or(false),
            })
            .collect();
        let controller = meta
            .owner_references
            .iter()
            .find(|r| r.controller == Some(true))
            .map(|r| (r.kind.clone().unwrap_or_default(), r.name.clone().unwrap_or_default()));
        let owners = if kind == WorkloadKind::Pod {
            let label =
                |key: &str| labels.as_ref().and_then(|l| l.iter().find(|(k, _)| k == key)).map(|(_, v)| v.to_string());
            Owners::of_pod(&refs, label)
        } else {
            let name = meta.name.as_deref().or(meta.generate_name.as_deref().map(stem));
            Owners::of_workload(kind, name, &refs)
        };

        Ok(Self {
            kind,
            base,
            has_metadata,
            labels,
            annotations,
            name: meta.name,
            generate_name: meta.generate_name,
            namespace: meta.namespace,
            owners,
            controller,
            containers,
            init_containers,
            container_count,
            has_init_containers,
            annotation_bytes,
            attributes_not_kept,
            host_network: spec.host_network.unwrap_or(false),
            restart_policy: spec.restart_policy.map(|s| s.0),
            resources: spec.resources.map(|r| r.0.read()),
            os: spec.os.and_then(|o| o.0.name).map(|s| s.0),
            volumes: spec
                .volumes
                .map(|v| v.0.into_iter().map(|(i, Obj(v))| (i, v.name.map(|n| n.0).unwrap_or_default())).collect()),
            template: template_json,
        })
    }

    /// The `env` list of the container at `index` of `list`, every entry as sent (tests: one container's list).
    #[cfg(test)]
    pub(crate) fn raw_env(&self, list: &str, index: usize) -> Vec<&'a RawValue> {
        self.raw_envs(list).into_iter().nth(index).unwrap_or_default()
    }

    /// The `env` list of every container of `list` (`containers` or `initContainers`), each entry as the API server
    /// sent it (for rebuilding a list without losing a field of the user's), read from the template in one pass.
    pub(crate) fn raw_envs(&self, list: &str) -> Vec<Vec<&'a RawValue>> {
        let lists = || -> Option<Vec<Vec<&'a RawValue>>> {
            let template: &'a RawValue = serde_json::from_str(self.template).ok()?;
            let spec = field(template, "spec", "").ok()??;
            let containers: Vec<&'a RawValue> = serde_json::from_str(field(spec, list, "").ok()??.get()).ok()?;
            let env = |c: &&'a RawValue| -> Vec<&'a RawValue> {
                let env = field(c, "env", "").ok().flatten();
                env.and_then(|e| serde_json::from_str(e.get()).ok()).unwrap_or_default()
            };
            Some(containers.iter().map(env).collect())
        };
        lists().unwrap_or_default()
    }

    /// A template label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_ref())
    }

    /// A template annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_ref())
    }

    /// Every template annotation.
    pub fn annotations(&self) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        self.annotations.iter().flatten().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

/// The first container whose name an earlier one (init containers first) already has: its list, index and name.
fn duplicate_name<'c>(init: &'c [Container<'_>], app: &'c [Container<'_>]) -> Option<(&'static str, usize, &'c str)> {
    let all = init.iter().map(|c| ("initContainers", c)).chain(app.iter().map(|c| ("containers", c)));
    let mut seen = std::collections::HashSet::with_capacity(init.len() + app.len());
    all.into_iter().find(|(_, c)| !seen.insert(c.name.as_ref())).map(|(list, c)| (list, c.index, c.name.as_ref()))
}

/// `generateName` without its trailing dash: the stem the API server appends a suffix to.
pub(crate) fn stem(generate_name: &str) -> &str {
    generate_name.trim_end_matches('-')
}

/// The ConfigMaps the containers of an object of `kind` (JSON `json`) draw variables from through `envFrom`, each
/// with the prefixes it is drawn with; at most [`limits::ENV_FROM`] of them (the edge looks them up before the
/// engine runs). Cheap for the objects that have none: their text never names a `configMapRef`.
pub fn config_map_refs(json: &str, kind: WorkloadKind) -> Vec<(String, Vec<String>)> {
    #[derive(Deserialize)]
    struct Template {
        spec: Option<Spec>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Spec {
        containers: Option<Vec<ContainerRefs>>,
        init_containers: Option<Vec<ContainerRefs>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ContainerRefs {
        env_from: Option<Vec<Source>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Source {
        prefix: Option<String>,
        config_map_ref: Option<Named>,
    }
    #[derive(Deserialize)]
    struct Named {
        name: Option<String>,
    }
    if !json.contains("configMapRef") {
        return Vec::new();
    }
    let Some(Template { spec: Some(spec) }) = template_json(json, kind).and_then(|t| serde_json::from_str(t).ok())
    else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let containers = spec.containers.into_iter().chain(spec.init_containers).flatten();
    for source in containers.flat_map(|c| c.env_from.unwrap_or_default()) {
        let Some(name) = source.config_map_ref.and_then(|r| r.name).filter(|n| !n.is_empty()) else { continue };
        let prefix = source.prefix.unwrap_or_default();
        let full = out.len() >= limits::ENV_FROM;
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, prefixes)) if !prefixes.contains(&prefix) => prefixes.push(prefix),
            Some(_) => {}
            None if !full => out.push((name, vec![prefix])),
            None => {}
        }
    }
    out
}

/// The pod template of an object of `kind` (the whole object for a Pod) as raw JSON text, if it has one.
pub(crate) fn template_json(json: &str, kind: WorkloadKind) -> Option<&str> {
    let mut raw: &RawValue = serde_json::from_str(json).ok()?;
    for token in kind.template_path() {
        raw = field(raw, token, "").ok()??;
    }
    Some(raw.get())
}

/// Deserializes `json` as `T`, turning serde's complaint into a path and a plain problem. Objects are read without
/// tracking where the reader is; only when one is refused is it read again with the path tracked, to name it.
fn typed<'a, T: Deserialize<'a>>(json: &'a str, prefix: &str) -> Result<T, ShapeError> {
    let mut de = serde_json::Deserializer::from_str(json);
    match T::deserialize(&mut de) {
        Ok(value) => Ok(value),
        Err(_) => Err(typed_slowly::<T>(json, prefix).err().unwrap_or_else(|| shape(prefix, "is not valid"))),
    }
}

/// [`typed`] with the path tracked: slower, and only for naming what is wrong.
#[cold]
fn typed_slowly<'a, T: Deserialize<'a>>(json: &'a str, prefix: &str) -> Result<T, ShapeError> {
    let mut de = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner().to_string();
        let path = match (prefix, e.path().to_string().as_str()) {
            ("", ".") => "object".to_owned(),
            (p, ".") => p.to_owned(),
            ("", rest) => rest.to_owned(),
            (p, rest) => format!("{p}.{rest}"),
        };
        if let Some(field) = inner.strip_prefix("missing field `").and_then(|f| f.split('`').next()) {
            let path = if path == "object" { field.to_owned() } else { format!("{path}.{field}") };
            return shape(path, "is missing");
        }
        let problem = [
            ("expected a sequence", "is not a list"),
            ("expected a string", "is not a string"),
            ("expected a boolean", "is not a boolean"),
            ("expected i64", "is not a number"),
            ("recursion limit", "is nested too deeply"),
        ]
        .iter()
        .find(|(needle, _)| inner.contains(needle))
        .map_or(if path == "object" { "is not a JSON object" } else { "is not an object" }, |(_, p)| p);
        shape(path, problem)
    })
}

/// A string member of the object's `metadata` (e.g. `namespace`), read without parsing anything else.
pub(crate) fn metadata_str(json: &str, key: &str) -> Option<String> {
    let raw: &RawValue = serde_json::from_str(json).ok()?;
    let value = field(field(raw, "metadata", "").ok()??, key, "").ok()??;
    serde_json::from_str::<S<'_>>(value.get()).ok().map(|s| s.0.into_owned())
}

/// The value of member `key` of the JSON object `raw` (`None` when absent or null), skipping the others.
fn field<'a>(raw: &'a RawValue, key: &str, path: &str) -> Result<Option<&'a RawValue>, ShapeError> {
    struct Seek<'k>(&'k str);
    impl<'de> Visitor<'de> for Seek<'_> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(k) = map.next_key::<S<'de>>()? {
                if k.0 == self.0 {
                    found = Some(map.next_value::<&'de RawValue>()?);
                } else {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
            Ok(found.filter(|v| v.get() != "null"))
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_map(Seek(key)).map_err(|_| shape(path, "is not an object"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixtures::{container, pod};
    use rstest::rstest;
    use serde_json::Value;
    use serde_json::json;

    #[test]
    fn reads_a_pod() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-7d9-", "namespace": "shop",
                "labels": {"pod-template-hash": "7d9", "team": "x"},
                "annotations": {"otel-injector.io/inject": "true", "a": "b"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d9", "controller": true}]},
            "spec": {
                "hostNetwork": true,
                "initContainers": [{"name": "init", "restartPolicy": "Always"}],
                "containers": [{"name": "app", "image": "shop:1.2", "ports": [{"containerPort": 8080}],
                    "env": [{"name": "OTEL_A", "value": "1"},
                            {"name": "OTEL_B", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
                            {"name": "OTEL_A", "value": "2"}]}]
            }
        });
        let json = pod.to_string();
        let view = PodView::parse(&json, WorkloadKind::Pod).expect("valid");
        assert_eq!(view.generate_name.as_deref(), Some("web-7d9-"));
        assert_eq!(view.namespace.as_deref(), Some("shop"));
        assert_eq!(view.annotation("otel-injector.io/inject"), Some("true"));
        assert_eq!(view.annotation("a"), None, "an annotation the engine never reads is counted, not kept");
        assert_eq!(view.annotation_bytes, "otel-injector.io/inject".len() + 4 + 2);
        assert_eq!(view.label("team"), None);
        assert_eq!(view.owners.deployment.as_deref(), Some("web"));
        assert!(view.host_network);
        let app = &view.containers[0];
        assert_eq!(
            (app.name.as_ref(), app.image.as_deref(), app.ports.as_slice()),
            ("app", Some("shop:1.2"), &[8080][..])
        );
        assert_eq!(app.env_var("OTEL_A").and_then(|e| e.value.as_deref()), Some("2"));
        assert!(app.env_var("OTEL_B").is_some_and(|e| e.value_from));
        assert_eq!(view.init_containers[0].name, "init");
        assert_eq!(view.restart_policy, None);
    }

    #[test]
    fn an_env_list_keeps_its_length_and_only_the_entries_the_engine_reads() {
        let pod = json!({"spec": {"containers": [{"name": "app", "env": [
            {"name": "A", "value": "1"}, {"name": "OTEL_SERVICE_NAME", "value": "web"},
            {"name": "B", "value": "x-$(OTEL_SERVICE_NAME)"}, {"name": "C", "valueFrom": {}},
            {"name": "OTEL_SERVICE_NAME", "value": "shop"}, {"name": "GOMEMLIMIT", "value": "80MiB"}]}]}});
        let json = pod.to_string();
        let view = PodView::parse(&json, WorkloadKind::Pod).expect("valid");
        let env = view.containers[0].env.as_ref().expect("env");
        assert_eq!(env.len(), 6);
        assert_eq!(env.entries().map(|(i, _)| i).collect::<Vec<_>>(), [1, 2, 4, 5]);
        assert_eq!((env.first("OTEL_SERVICE_NAME"), env.last("OTEL_SERVICE_NAME")), (Some(1), Some(4)));
        assert!(env.get(0).is_none(), "A is counted, not kept");
        assert_eq!(view.containers[0].env_var("OTEL_SERVICE_NAME").and_then(|e| e.value.as_deref()), Some("shop"));
        let raw: Vec<&str> = view.raw_env("containers", 0).iter().map(|r| r.get()).collect();
        assert_eq!(raw[3], r#"{"name":"C","valueFrom":{}}"#, "every entry stays available, as sent");
    }

    #[test]
    fn of_a_huge_object_only_what_the_limits_need_is_kept() {
        let env = (0..5000).fold(container("app"), |c, i| c.env(&format!("OTEL_V{i}"), "1"));
        let wide = (0..5000).fold(pod("p").container(env), |p, i| p.container(container(&format!("c{i}"))));
        let wide = (0..5000).fold(wide, |p, i| p.annotation(&format!("note/{i}"), "x").label(&format!("l{i}"), "y"));
        let json = wide.build().to_string();
        let view = PodView::parse(&json, WorkloadKind::Pod).expect("valid");
        assert_eq!(view.container_count, 5001);
        assert_eq!(view.containers.len(), limits::CONTAINERS + 1);
        let env = view.containers[0].env.as_ref().expect("env");
        assert_eq!((env.len(), env.entries().count()), (5000, limits::ENV_ENTRIES + 1));
        assert_eq!(view.annotations().count(), 0);
        assert_eq!(view.labels.as_ref().map(Vec::len), Some(0));
        assert!(view.annotation_bytes > 5000 * 7);
    }

    #[test]
    fn an_entry_the_engine_does_not_read_is_still_checked() {
        let pod = json!({"spec": {"containers": [{"name": "a", "env": [
            {"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": {"x": 1}}]}]}});
        let json = pod.to_string();
        let e = PodView::parse(&json, WorkloadKind::Pod).expect_err("invalid");
        assert_eq!(e.to_string(), "spec.containers[0].env[2].value is not a string");
    }

    #[test]
    fn reads_a_cronjob_template_and_names_the_workload() {
        let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "env": null}]}}}}}});
        let json = cj.to_string();
        let view = PodView::parse(&json, WorkloadKind::CronJob).expect("valid");
        assert_eq!(view.base, ["spec", "jobTemplate", "spec", "template"]);
        assert!(!view.has_metadata);
        assert!(view.containers[0].env.is_none());
        assert_eq!(view.owners.primary(), Some(("CronJob", "nightly")));
    }

    #[rstest]
    #[case(json!([]), "object is not a JSON object")]
    #[case(json!({"spec": {}}), "spec.containers is missing")]
    #[case(json!({"metadata": []}), "metadata is not an object")]
    #[case(json!({"spec": {"containers": {}}}), "spec.containers is not a list")]
    #[case(json!({"spec": {"containers": [{"image": "x"}]}}), "spec.containers[0].name is missing")]
    #[case(json!({"spec": {"containers": [{"name": 3}]}}), "spec.containers[0].name is not a string")]
    #[case(json!({"spec": {"containers": [{"name": "a", "env": {}}]}}), "spec.containers[0].env is not a list")]
    #[case(json!({"spec": {"containers": [{"name": "a", "env": [{"value": "x"}]}]}}), "spec.containers[0].env[0].name is missing")]
    #[case(json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": 1}]}]}}), "spec.containers[0].env[0].value is not a string")]
    #[case(json!({"metadata": {"annotations": {"x": true}}, "spec": {"containers": []}}), "metadata.annotations.x is not a string")]
    #[case(json!({"spec": {"hostNetwork": "yes", "containers": []}}), "spec.hostNetwork is not a boolean")]
    #[case(json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": "80"}]}]}}), "spec.containers[0].ports[0].containerPort is not a number")]
    #[case(json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}), "spec.containers[1].name \"a\" repeats another container's name (names must be unique)")]
    #[case(json!({"spec": {"initContainers": [{"name": "a"}], "containers": [{"name": "b"}, {"name": "a"}]}}), "spec.containers[1].name \"a\" repeats another container's name (names must be unique)")]
    fn pod_shape_errors_name_the_path(#[case] pod: Value, #[case] message: &str) {
        let json = pod.to_string();
        let err = PodView::parse(&json, WorkloadKind::Pod).expect_err("bad shape");
        assert_eq!(err.to_string(), message);
    }

    #[rstest]
    #[case(json!({"metadata": {"name": "d"}}), "spec is missing: no pod template to instrument")]
    #[case(json!({"spec": {"template": null}}), "spec.template is missing: no pod template to instrument")]
    #[case(json!({"spec": {"template": {}}}), "spec.template.spec is missing: no pod spec to instrument")]
    #[case(json!({"spec": {"template": {"spec": {"containers": 1}}}}), "spec.template.spec.containers is not a list")]
    fn template_shape_errors_name_the_path(#[case] deployment: Value, #[case] message: &str) {
        let json = deployment.to_string();
        let err = PodView::parse(&json, WorkloadKind::Deployment).expect_err("bad shape");
        assert_eq!(err.to_string(), message);
    }

    #[test]
    fn the_config_maps_drawn_through_env_from_are_listed_with_their_prefixes() {
        let deployment = serde_json::json!({"spec": {"template": {"spec": {
        "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "b"}}]}],
        "containers": [
            {"name": "a", "envFrom": [{"configMapRef": {"name": "a"}}, {"prefix": "OTEL_", "configMapRef": {"name": "a"}},
                {"secretRef": {"name": "s"}}]},
            {"name": "c", "envFrom": [{"configMapRef": {"name": "a"}}]}
        ]}}}});
        let refs = config_map_refs(&deployment.to_string(), WorkloadKind::Deployment);
        let want = |n: &str, p: &[&str]| (n.to_owned(), p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(refs, [want("a", &["", "OTEL_"]), want("b", &[""])]);
        assert!(config_map_refs(r#"{"spec":{"containers":[{"name":"a"}]}}"#, WorkloadKind::Pod).is_empty());
    }
}
