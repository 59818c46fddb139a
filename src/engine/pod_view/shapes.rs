//! The JSON shapes a pod template is read from: borrowed strings, objects, maps that keep only the keys the engine
//! reads, lists that keep only the first few items, and the parts of metadata, spec and containers the view needs.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::*;

/// A JSON string, borrowed from the input when it needs no unescaping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S<'a>(pub Str<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for S<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = S<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(S(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(S(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(S(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// A JSON object deserialized as `T` (serde's derived structs would also take an array).
#[derive(Debug, Clone)]
pub(crate) struct Obj<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Which entries of a map of strings the view keeps.
pub(super) trait Keep {
    fn keep(key: &str) -> bool;
}

/// Labels the engine reads.
pub(super) struct LabelKeys;

impl Keep for LabelKeys {
    fn keep(key: &str) -> bool {
        engine_reads_label(key)
    }
}

/// Annotations the engine reads.
pub(super) struct AnnotationKeys;

impl Keep for AnnotationKeys {
    fn keep(key: &str) -> bool {
        engine_reads_annotation(key)
    }
}

/// A map of strings (labels, annotations): the entries the engine reads, in document order, and the bytes of all
/// of them (keys and values), which Kubernetes limits. Every entry is still checked to be a string.
pub(super) struct StrMap<'a, K> {
    pub(super) entries: Vec<(Str<'a>, Str<'a>)>,
    pub(super) bytes: usize,
    /// Resource attributes not kept, beyond one more than the limit.
    pub(super) attributes_not_kept: usize,
    pub(super) keep: std::marker::PhantomData<K>,
}

impl<'de: 'a, 'a, K: Keep> Deserialize<'de> for StrMap<'a, K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, K>(std::marker::PhantomData<(&'a (), K)>);
        impl<'de: 'a, 'a, K: Keep> Visitor<'de> for V<'a, K> {
            type Value = StrMap<'a, K>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out =
                    StrMap { entries: Vec::new(), bytes: 0, attributes_not_kept: 0, keep: std::marker::PhantomData };
                let mut attributes = 0;
                while let Some((k, v)) = map.next_entry::<S<'a>, S<'a>>()? {
                    out.bytes += k.0.len() + v.0.len();
                    if !K::keep(&k.0) {
                        continue;
                    }
                    if is_attribute(&k.0) {
                        // One more than the limit is enough to know there are too many; the rest are counted.
                        attributes += 1;
                        if attributes > limits::ATTRIBUTES + 1 {
                            out.attributes_not_kept += 1;
                            continue;
                        }
                    }
                    out.entries.push((k.0, v.0));
                }
                Ok(out)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A list of which the first `N` items are kept and the rest only counted (each is still checked).
pub(super) struct Bounded<T, const N: usize> {
    pub(super) kept: Vec<T>,
    pub(super) len: usize,
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Bounded<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const N: usize>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for V<T, N> {
            type Value = Bounded<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Bounded { kept: Vec::new(), len: 0 };
                while let Some(item) = seq.next_element::<T>()? {
                    if out.len < N {
                        out.kept.push(item);
                    }
                    out.len += 1;
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// An item of a list of which only some are worth keeping.
pub(super) trait Worth {
    /// Whether the engine reads this item.
    fn worth_keeping(&self) -> bool;
}

/// A list of which only the items the engine reads are kept, each with its index (each item is still checked):
/// however long the list, memory holds only those (a volume or a mount of an agent's).
pub(super) struct Kept<T>(pub(super) Vec<(usize, T)>);

impl<'de, T: Deserialize<'de> + Worth> Deserialize<'de> for Kept<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Worth> Visitor<'de> for V<T> {
            type Value = Kept<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut kept = Vec::new();
                let mut index = 0;
                while let Some(item) = seq.next_element::<T>()? {
                    if item.worth_keeping() {
                        kept.push((index, item));
                    }
                    index += 1;
                }
                Ok(Kept(kept))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// Containers kept of one list: one more than the limit, so an object over it is known to be.
pub(super) const CONTAINERS_KEPT: usize = limits::CONTAINERS + 1;

#[derive(Deserialize)]
pub(super) struct Meta<'a> {
    #[serde(borrow, default)]
    pub(super) name: Option<S<'a>>,
    #[serde(borrow, default, rename = "generateName")]
    pub(super) generate_name: Option<S<'a>>,
    #[serde(borrow, default)]
    pub(super) namespace: Option<S<'a>>,
    #[serde(borrow, default)]
    pub(super) labels: Option<StrMap<'a, LabelKeys>>,
    #[serde(borrow, default)]
    pub(super) annotations: Option<StrMap<'a, AnnotationKeys>>,
    #[serde(borrow, default, rename = "ownerReferences")]
    pub(super) owner_references: Option<Vec<Obj<OwnerRefRaw<'a>>>>,
}

/// A workload's own metadata: labels and annotations (possibly huge) are not the template's and are skipped.
#[derive(Deserialize)]
pub(super) struct WorkloadMeta<'a> {
    #[serde(borrow, default)]
    pub(super) name: Option<S<'a>>,
    #[serde(borrow, default, rename = "generateName")]
    pub(super) generate_name: Option<S<'a>>,
    #[serde(borrow, default)]
    pub(super) namespace: Option<S<'a>>,
    #[serde(borrow, default, rename = "ownerReferences")]
    pub(super) owner_references: Option<Vec<Obj<OwnerRefRaw<'a>>>>,
}

#[derive(Deserialize)]
pub(super) struct OwnerRefRaw<'a> {
    #[serde(borrow, default)]
    pub(super) kind: Option<S<'a>>,
    #[serde(borrow, default)]
    pub(super) name: Option<S<'a>>,
    #[serde(default)]
    pub(super) controller: Option<bool>,
}

/// What the view needs of the object's own metadata.
pub(super) struct ObjectMeta<'a> {
    pub(super) name: Option<Str<'a>>,
    pub(super) generate_name: Option<Str<'a>>,
    pub(super) namespace: Option<Str<'a>>,
    pub(super) owner_references: Vec<OwnerRef2<'a>>,
}

pub(super) struct OwnerRef2<'a> {
    pub(super) kind: Option<Str<'a>>,
    pub(super) name: Option<Str<'a>>,
    pub(super) controller: Option<bool>,
}

impl<'a> ObjectMeta<'a> {
    fn refs(list: Option<Vec<Obj<OwnerRefRaw<'a>>>>) -> Vec<OwnerRef2<'a>> {
        list.unwrap_or_default()
            .into_iter()
            .map(|Obj(r)| OwnerRef2 { kind: r.kind.map(|s| s.0), name: r.name.map(|s| s.0), controller: r.controller })
            .collect()
    }

    pub(super) fn of(meta: Option<&Meta<'a>>) -> Self {
        let Some(m) = meta else {
            return Self { name: None, generate_name: None, namespace: None, owner_references: Vec::new() };
        };
        Self {
            name: m.name.clone().map(|s| s.0),
            generate_name: m.generate_name.clone().map(|s| s.0),
            namespace: m.namespace.clone().map(|s| s.0),
            owner_references: m
                .owner_references
                .iter()
                .flatten()
                .map(|Obj(r)| OwnerRef2 {
                    kind: r.kind.clone().map(|s| s.0),
                    name: r.name.clone().map(|s| s.0),
                    controller: r.controller,
                })
                .collect(),
        }
    }

    pub(super) fn of_workload(meta: Option<WorkloadMeta<'a>>) -> Self {
        let Some(m) = meta else { return Self::of(None) };
        Self {
            name: m.name.map(|s| s.0),
            generate_name: m.generate_name.map(|s| s.0),
            namespace: m.namespace.map(|s| s.0),
            owner_references: Self::refs(m.owner_references),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct Workload<'a> {
    #[serde(borrow, default)]
    pub(super) metadata: Option<Obj<WorkloadMeta<'a>>>,
    #[serde(borrow, default)]
    pub(super) spec: Option<RawObject<'a>>,
}

/// Any JSON object, kept raw.
pub(super) struct RawObject<'a>(pub(super) &'a RawValue);

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'a RawValue>::deserialize(d)?;
        if raw.get().starts_with('{') { Ok(Self(raw)) } else { Err(de::Error::custom("invalid type, expected a map")) }
    }
}

#[derive(Deserialize)]
pub(super) struct Template<'a> {
    #[serde(borrow, default)]
    pub(super) metadata: Option<Obj<Meta<'a>>>,
    #[serde(borrow, default)]
    pub(super) spec: Option<Obj<PodSpec<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct PodSpec<'a> {
    #[serde(borrow, default)]
    pub(super) containers: Option<Bounded<Obj<ContainerRaw<'a>>, CONTAINERS_KEPT>>,
    #[serde(borrow, default, rename = "initContainers")]
    pub(super) init_containers: Option<Bounded<Obj<ContainerRaw<'a>>, CONTAINERS_KEPT>>,
    #[serde(default, rename = "hostNetwork")]
    pub(super) host_network: Option<bool>,
    #[serde(borrow, default, rename = "restartPolicy")]
    pub(super) restart_policy: Option<S<'a>>,
    #[serde(default)]
    pub(super) resources: Option<Obj<ResourcesRaw>>,
    #[serde(borrow, default)]
    pub(super) os: Option<Obj<OsRaw<'a>>>,
    #[serde(borrow, default)]
    pub(super) volumes: Option<Kept<Obj<NameOnly<'a>>>>,
}

/// An entry of which only the name is read (a volume).
#[derive(Deserialize)]
pub(super) struct NameOnly<'a> {
    #[serde(borrow, default)]
    pub(super) name: Option<S<'a>>,
}

/// Which languages' agents a `command` or `args` list already loads, one bit per entry of
/// [`crate::engine::config::LANGUAGES`] (each word of each item checked; nothing kept).
#[derive(Default)]
pub(super) struct Launches(pub(super) u8);

impl<'de> Deserialize<'de> for Launches {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Launches;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut bits = 0u8;
                while let Some(S(item)) = seq.next_element::<S<'de>>()? {
                    for word in item.split_whitespace() {
                        for (i, language) in crate::engine::config::LANGUAGES.iter().enumerate() {
                            if language.launched_by(word) {
                                bits |= 1 << i;
                            }
                        }
                    }
                }
                Ok(Launches(bits))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Whether a volume's or a mount's name, or a mount's path, is an agent's.
fn of_an_agent(name: Option<&S<'_>>, path: Option<&S<'_>>) -> bool {
    let languages = &crate::engine::config::LANGUAGES;
    name.is_some_and(|n| languages.iter().any(|l| l.volume == n.0))
        || path.is_some_and(|p| languages.iter().any(|l| l.mount_path == p.0))
}

impl Worth for Obj<NameOnly<'_>> {
    fn worth_keeping(&self) -> bool {
        of_an_agent(self.0.name.as_ref(), None)
    }
}

impl Worth for Obj<MountRaw<'_>> {
    fn worth_keeping(&self) -> bool {
        of_an_agent(self.0.name.as_ref(), self.0.mount_path.as_ref())
    }
}

/// A `volumeMounts` entry: its volume and where it is mounted.
#[derive(Deserialize)]
pub(super) struct MountRaw<'a> {
    #[serde(borrow, default)]
    pub(super) name: Option<S<'a>>,
    #[serde(borrow, default, rename = "mountPath")]
    pub(super) mount_path: Option<S<'a>>,
}

#[derive(Deserialize)]
pub(super) struct OsRaw<'a> {
    #[serde(borrow, default)]
    pub(super) name: Option<S<'a>>,
}

#[derive(Deserialize)]
pub(super) struct ResourcesRaw {
    #[serde(default)]
    pub(super) requests: Option<std::collections::BTreeMap<String, QuantityText>>,
    #[serde(default)]
    pub(super) limits: Option<std::collections::BTreeMap<String, QuantityText>>,
}

impl ResourcesRaw {
    pub(super) fn read(self) -> Resources {
        let list = |m: Option<std::collections::BTreeMap<String, QuantityText>>| {
            m.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect()
        };
        Resources { requests: list(self.requests), limits: list(self.limits) }
    }
}

/// A quantity as text: the API server writes a string; a manifest may hold a number (`cpu: 1`).
pub(super) struct QuantityText(pub(super) String);

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = QuantityText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(QuantityText(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(QuantityText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(QuantityText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(QuantityText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
pub(super) struct ContainerRaw<'a> {
    #[serde(borrow, default)]
    pub(super) name: Option<S<'a>>,
    #[serde(borrow, default)]
    pub(super) image: Option<S<'a>>,
    #[serde(borrow, default)]
    pub(super) env: Option<EnvRead<'a>>,
    #[serde(default)]
    pub(super) ports: Option<Vec<Obj<Port>>>,
    #[serde(default)]
    pub(super) resources: Option<Obj<ResourcesRaw>>,
    #[serde(borrow, default, rename = "restartPolicy")]
    pub(super) restart_policy: Option<S<'a>>,
    #[serde(borrow, default, rename = "envFrom")]
    pub(super) env_from: Option<Bounded<Obj<EnvFromRaw<'a>>, ENV_FROM_KEPT>>,
    #[serde(borrow, default, rename = "volumeMounts")]
    pub(super) volume_mounts: Option<Kept<Obj<MountRaw<'a>>>>,
    #[serde(default)]
    pub(super) command: Option<Launches>,
    #[serde(default)]
    pub(super) args: Option<Launches>,
}

/// Sources of one `envFrom` list kept: one more than the limit, so a list over it is known to be.
pub(super) const ENV_FROM_KEPT: usize = limits::ENV_FROM + 1;

/// One `envFrom` entry.
#[derive(Deserialize)]
pub(super) struct EnvFromRaw<'a> {
    #[serde(borrow, default)]
    pub(super) prefix: Option<S<'a>>,
    #[serde(borrow, default, rename = "configMapRef")]
    pub(super) config_map_ref: Option<Obj<NamedRef<'a>>>,
    #[serde(borrow, default, rename = "secretRef")]
    pub(super) secret_ref: Option<Obj<NamedRef<'a>>>,
}

/// A `configMapRef` or `secretRef`.
#[derive(Deserialize)]
pub(super) struct NamedRef<'a> {
    #[serde(borrow, default)]
    pub(super) name: Option<S<'a>>,
    #[serde(default)]
    pub(super) optional: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct Port {
    #[serde(rename = "containerPort")]
    pub(super) container_port: i64,
}

/// An env entry as [`EnvRead`] takes it: `name` required.
#[derive(Deserialize)]
pub(super) struct EnvEntry<'a> {
    #[serde(borrow)]
    pub(super) name: S<'a>,
    #[serde(borrow, default)]
    pub(super) value: Option<S<'a>>,
    #[serde(default, rename = "valueFrom")]
    pub(super) value_from: Option<de::IgnoredAny>,
}

impl<'a> ContainerRaw<'a> {
    /// The container at `index`; `path` names it (`spec.containers[0]`) when something is wrong.
    pub(super) fn read(self, index: usize, path: impl Fn() -> String) -> Result<Container<'a>, ShapeError> {
        let ContainerRaw { name, image, env, ports, resources, restart_policy, env_from, volume_mounts, command, args } =
            self;
        let launches = command.unwrap_or_default().0 | args.unwrap_or_default().0;
        let name = name
            .map(|s| s.0)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| shape(format!("{}.name", path()), "is missing"))?;
        let env = env.map(|env| Env { len: env.len, read: env.read });
        let ports = ports.unwrap_or_default().into_iter().map(|p| p.0.container_port).collect();
        let resources = resources.map(|r| r.0.read());
        let restart_policy = restart_policy.map(|s| s.0);
        let env_from = env_from.map_or_else(Vec::new, |list| {
            list.kept
                .into_iter()
                .filter_map(|Obj(source)| {
                    let prefix = source.prefix.map(|p| p.0).unwrap_or_default();
                    let (kind, Obj(r)) = match (source.config_map_ref, source.secret_ref) {
                        (Some(r), _) => (EnvSourceKind::ConfigMap, r),
                        (None, Some(r)) => (EnvSourceKind::Secret, r),
                        (None, None) => return None,
                    };
                    let name = r.name.map(|n| n.0).unwrap_or_default();
                    Some(EnvSource { kind, name, prefix, optional: r.optional.unwrap_or(false) })
                })
                .collect()
        });
        let image = image.map(|s| s.0);
        let volume_mounts = volume_mounts.map(|mounts| {
            let text = |s: Option<S<'a>>| s.map(|s| s.0).unwrap_or_default();
            mounts.0.into_iter().map(|(i, Obj(m))| (i, text(m.name), text(m.mount_path))).collect()
        });
        Ok(Container { index, name, image, env, ports, resources, restart_policy, env_from, volume_mounts, launches })
    }
}
