use super::*;
use crate::engine::config::ExporterTls;
use proptest::prelude::*;

fn owners_variants() -> Vec<Owners> {
    let name = |s: &str| Some(s.to_owned());
    vec![
        Owners::default(),
        Owners { deployment: name("web"), replicaset: name("web-5d8f9c7b6"), ..Owners::default() },
        Owners { statefulset: name("db"), ..Owners::default() },
        Owners { daemonset: name("node.agent"), ..Owners::default() },
        Owners { job: name("migrate"), ..Owners::default() },
        Owners { cronjob: name("nightly"), job: name("nightly-29412345"), ..Owners::default() },
        Owners {
            deployment: name("a"),
            replicaset: name("b"),
            statefulset: name("c"),
            daemonset: name("d"),
            cronjob: name("e"),
            job: name("f"),
            rollout: name("g"),
        },
    ]
}

fn exporter_variants() -> Vec<(BTreeMap<String, String>, SidecarConfig)> {
    let headers = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let tls = |insecure, skip, ca: Option<&str>| ExporterTls {
        insecure,
        insecure_skip_verify: skip,
        ca_file: ca.map(str::to_owned),
    };
    let sidecar =
        |endpoint: &str, tls| SidecarConfig { exporter_endpoint: endpoint.to_owned(), tls, ..SidecarConfig::default() };
    vec![
        (BTreeMap::new(), SidecarConfig::default()),
        (headers(&[("X-Scope-OrgID", "prod")]), sidecar("gateway.monitoring:4317", tls(true, false, None))),
        (
            headers(&[("Authorization", "Bearer ${env:SECRET} \"quoted\" $(NOT)"), ("x-tenant", "1e3")]),
            sidecar("https://gw.example.com:443", tls(false, true, Some("/etc/ca/ca.crt"))),
        ),
        (headers(&[("a", "multi\nline")]), sidecar("[::1]:4317", tls(false, false, Some("C:\\ca $x")))),
    ]
}

fn signal_sets() -> Vec<Vec<Signal>> {
    let all = Signal::ALL;
    (1..8u8)
        .map(|mask| all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, s)| *s).collect())
        .collect()
}

/// What the patch carries for this YAML: escaped for the kubelet, inside a JSON string.
fn env_json(yaml: &str) -> String {
    let mut out = String::new();
    json_string::push_inner(&mut out, &env::escape(yaml));
    out
}

#[test]
fn every_variant_is_written_byte_for_byte_as_the_yaml_emitter_writes_it() {
    let mut checked = 0;
    for (headers, sidecar) in exporter_variants() {
        let pieces = Pieces::new(&headers, &sidecar);
        for owners in owners_variants() {
            for signals in signal_sets() {
                for ratio in [1.0, 0.25, 1.0 / 3.0, 0.1234567, 1e-7, 0.0, 0.999_999_9] {
                    for namespace in ["shop", "a", "web-1.x", "y", "nulls"] {
                        let inputs = Inputs {
                            namespace,
                            owners: &owners,
                            signals: &signals,
                            sampling_ratio: ratio,
                            headers: &headers,
                            sidecar: &sidecar,
                        };
                        let want = super::super::render(&inputs);
                        let mut yaml = String::new();
                        assert!(pieces.write(&inputs, Form::Yaml, &mut yaml), "{inputs:?}");
                        assert_eq!(yaml, want, "{inputs:?}");
                        let mut encoded = String::new();
                        assert!(pieces.write(&inputs, Form::EnvJson, &mut encoded));
                        assert_eq!(encoded, env_json(&want), "{inputs:?}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 4 * 7 * 7 * 7 * 5);
}

#[test]
fn names_yaml_would_quote_are_left_to_the_emitter_and_written_as_it_writes_them() {
    let (headers, sidecar) = (BTreeMap::new(), SidecarConfig::default());
    let pieces = Pieces::new(&headers, &sidecar);
    for name in ["123", "1e3", "0x1f", "null", "true", "false", "-a", ".a", "", "Web", "a b", "a:b", "a$b", "ä"] {
        let owners = Owners { deployment: Some(name.to_owned()), ..Owners::default() };
        for (namespace, owners) in [(name, Owners::default()), ("shop", owners)] {
            let inputs = Inputs {
                namespace,
                owners: &owners,
                signals: &Signal::ALL,
                sampling_ratio: 1.0,
                headers: &headers,
                sidecar: &sidecar,
            };
            let mut out = String::new();
            assert!(!pieces.write(&inputs, Form::Yaml, &mut out), "{name:?} is written by the emitter");
            assert!(out.is_empty(), "nothing is appended before falling back");
            let mut whole = String::new();
            pieces.write_or_render(&inputs, Form::Yaml, &mut whole);
            assert_eq!(whole, super::super::render(&inputs), "{name:?}: the emitter's text");
            let mut encoded = String::new();
            pieces.write_or_render(&inputs, Form::EnvJson, &mut encoded);
            assert_eq!(encoded, env_json(&whole), "{name:?}: the same, as the patch carries it");
        }
    }
}

proptest! {
    /// Whatever the names, the text is the emitter's or is left to it: never a different text.
    #[test]
    fn any_names_are_written_as_the_emitter_writes_them_or_left_to_it(
        namespace in "[a-z0-9.-]{1,20}|\\PC{0,12}",
        deployment in "[a-z0-9.-]{1,30}|\\PC{0,12}",
        job in proptest::option::of("[a-z][a-z0-9-]{0,20}"),
    ) {
        let (headers, sidecar) = (BTreeMap::new(), SidecarConfig::default());
        let owners = Owners { deployment: Some(deployment), job, ..Owners::default() };
        let inputs = Inputs {
            namespace: &namespace,
            owners: &owners,
            signals: &Signal::ALL,
            sampling_ratio: 0.5,
            headers: &headers,
            sidecar: &sidecar,
        };
        let mut out = String::new();
        if Pieces::new(&headers, &sidecar).write(&inputs, Form::Yaml, &mut out) {
            prop_assert_eq!(out, super::super::render(&inputs));
        }
    }
}
