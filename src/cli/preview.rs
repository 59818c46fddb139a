//! `preview`: what the webhook would do to manifests or AdmissionReviews, offline, with the same engine.
//!
//! Plain objects go through [`inject::mutate`]; AdmissionReview documents go through [`admission::Review`], the
//! webhook's own code path. `-o patch` prints exactly the bytes the webhook would base64-encode.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use serde_json::Value;

pub mod yaml;

use crate::cli::{OutputFormat, PreviewArgs};
use crate::cluster::snapshot;
use crate::engine::config::Config;
use crate::engine::explanation::Explanation;
use crate::engine::inject::env_from::{ConfigMaps, Found};
use crate::engine::inject::{self, Stop, Target};
use crate::engine::policy::NamespaceMeta;
use crate::engine::syntax::{self, KubeVersion};
use crate::engine::workload::WorkloadKind;
use crate::webhook::admission;

/// The most `preview` reads from one file or stdin: an endless input (`-f /dev/zero`) stops here.
pub(crate) const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;

/// Reads at most [`MAX_INPUT_BYTES`] of UTF-8 text, without a leading byte-order mark (kubectl accepts one).
fn read_at_most(source: impl Read, name: &str) -> Result<String, PreviewError> {
    let mut bytes = Vec::new();
    source
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| PreviewError::Read { file: name.to_owned(), source })?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(PreviewError::TooLarge { file: name.to_owned(), limit: MAX_INPUT_BYTES });
    }
    let text = String::from_utf8(bytes).map_err(|e| PreviewError::Document {
        file: name.to_owned(),
        document: 1,
        message: format!("is not UTF-8 text ({e})"),
    })?;
    Ok(text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text))
}

/// Preview settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Output format.
    pub output: OutputFormat,
    /// Explain decisions on stderr.
    pub explain: bool,
    /// Namespace of objects that do not name one.
    pub namespace: String,
    /// Labels and annotations of namespaces read from the cluster (`--from-cluster`).
    pub cluster_namespaces: BTreeMap<String, NamespaceMeta>,
    /// Labels and annotations given as flags: they apply to every namespace, over what the cluster says.
    pub ns: NamespaceMeta,
    /// The configuration.
    pub config: Config,
    /// The API server version to preview for (`--kube-version`, or the cluster's); unknown means native sidecars.
    pub server_version: Option<KubeVersion>,
    /// ConfigMaps the containers may draw variables from (`envFrom`): those given in the input files.
    pub config_maps: ConfigMaps,
}

impl Options {
    /// Options for `output` under `config`: namespace `default`, no namespace policy, no explanation, version
    /// unknown.
    pub fn new(output: OutputFormat, config: Config) -> Self {
        Self {
            output,
            explain: false,
            namespace: "default".to_owned(),
            cluster_namespaces: BTreeMap::new(),
            ns: NamespaceMeta::default(),
            config,
            server_version: None,
            config_maps: ConfigMaps::default(),
        }
    }

    /// The policy-relevant metadata of `namespace`: the cluster's, overlaid with the flags.
    pub(crate) fn namespace_meta(&self, namespace: &str) -> NamespaceMeta {
        let mut meta = self.cluster_namespaces.get(namespace).cloned().unwrap_or_default();
        meta.labels.extend(self.ns.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        meta.annotations.extend(self.ns.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
        meta
    }
}

/// One input file (or stdin) and its text.
#[derive(Debug, Clone)]
pub struct Input {
    /// File name as given (`-` for stdin).
    pub name: String,
    /// Its content.
    pub text: String,
}

/// Preview failed; the message names the file and document.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// A document is not a usable object.
    #[error("{file}: document {document}: {message}")]
    Document {
        /// The file.
        file: String,
        /// 1-based document number.
        document: usize,
        /// What is wrong.
        message: String,
    },
    /// The input is larger than preview reads.
    #[error("{file}: larger than {limit} bytes; preview reads at most that much")]
    TooLarge {
        /// The file.
        file: String,
        /// The limit.
        limit: u64,
    },
    /// Output could not be written.
    #[error("cannot write output: {0}")]
    Write(#[from] std::io::Error),
}

/// One object read from the input.
#[derive(Debug, Clone)]
struct Item {
    origin: String,
    value: Value,
}

/// What preview found for one object.
#[derive(Debug)]
struct Outcome {
    label: String,
    origin: String,
    before: Value,
    after: Value,
    patch: Vec<u8>,
    warnings: Vec<String>,
    explanation: Result<Explanation, String>,
}

/// The `preview` command: reads the files, previews, prints.
pub fn run_cli(args: &PreviewArgs) -> anyhow::Result<()> {
    let inputs = read_inputs(&args.files)?;
    let mut options = Options::new(args.output, Config::default());
    options.explain = args.explain;
    options.namespace = args.namespace.clone();
    options.ns = args.namespace_meta();
    options.server_version = args.kube_version;
    if args.from_cluster || args.config_from_cluster.is_some() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(from_cluster(args, &inputs, &mut options))?;
    } else {
        options.config = args.config.load()?;
    }
    run(&inputs, &options, &mut std::io::stdout().lock(), &mut std::io::stderr().lock())?;
    Ok(())
}

/// Reads each file (`-`: stdin), up to preview's limit.
pub(crate) fn read_inputs(files: &[String]) -> Result<Vec<Input>, PreviewError> {
    let mut inputs = Vec::with_capacity(files.len());
    for name in files {
        let read = if name == "-" {
            read_at_most(std::io::stdin().lock(), name)
        } else {
            std::fs::File::open(name)
                .map_err(|source| PreviewError::Read { file: name.clone(), source })
                .and_then(|file| read_at_most(file, name))
        };
        inputs.push(Input { name: name.clone(), text: read? });
    }
    Ok(inputs)
}

/// The objects of one input (YAML or JSON, multi-document, `kind: List` items), in order.
pub(crate) fn objects(input: &Input) -> Result<Vec<Value>, PreviewError> {
    Ok(documents(input)?.into_iter().map(|item| item.value).collect())
}

/// Fills `options` from the current kubeconfig context: the config (`--config-from-cluster`) and, with
/// `--from-cluster`, the server version (unless `--kube-version` names one) and the objects' namespaces.
async fn from_cluster(args: &PreviewArgs, inputs: &[Input], options: &mut Options) -> anyhow::Result<()> {
    let client = snapshot::connect(&args.cluster.source()).await?;
    options.config = super::load_config(&client, &args.config, args.config_from_cluster.as_ref()).await?;
    if !args.from_cluster {
        return Ok(());
    }
    if options.server_version.is_none() {
        options.server_version = Some(snapshot::server_version(&client).await?);
    }
    for namespace in namespaces_of(inputs, &options.namespace)? {
        match snapshot::namespace(&client, &namespace).await? {
            Some(meta) => {
                options.cluster_namespaces.insert(namespace, meta);
            }
            None => eprintln!("Warning: namespace {namespace} does not exist in the cluster; no namespace policy"),
        }
    }
    Ok(())
}

/// The namespaces the objects of `inputs` will be created in (`default` for those that name none).
pub(crate) fn namespaces_of(inputs: &[Input], default: &str) -> Result<BTreeSet<String>, PreviewError> {
    let mut out = BTreeSet::new();
    for input in inputs {
        for item in documents(input)? {
            let v = &item.value;
            let named = v.pointer("/request/namespace").or_else(|| v.pointer("/request/object/metadata/namespace"));
            let named = named.or_else(|| v.pointer("/metadata/namespace")).and_then(Value::as_str);
            out.insert(named.filter(|n| !n.is_empty()).unwrap_or(default).to_owned());
        }
    }
    Ok(out)
}

/// Previews every object of `inputs`; nothing is printed unless every document could be read.
pub fn run(inputs: &[Input], options: &Options, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), PreviewError> {
    let mut items = Vec::new();
    for input in inputs {
        items.extend(documents(input)?);
    }
    // ConfigMaps given beside the workloads are what their containers draw through `envFrom`.
    let mut with_maps = None;
    for (name, data) in items.iter().filter_map(|i| config_map_of(&i.value)) {
        with_maps.get_or_insert_with(|| options.clone()).config_maps.insert(name, Found::Data(data));
    }
    let options = with_maps.as_ref().unwrap_or(options);
    let outcomes: Vec<Outcome> = items.into_iter().map(|item| preview(item, options)).collect();
    for o in &outcomes {
        for w in &o.warnings {
            writeln!(err, "Warning: {}: {w}", o.label)?;
        }
        if options.explain {
            writeln!(err, "# {} ({})", o.label, o.origin)?;
            match &o.explanation {
                Ok(e) => write!(err, "{e}")?,
                Err(note) => writeln!(err, "  {note}")?,
            }
        }
    }
    render(&outcomes, options.output, out)
}

/// A ConfigMap object's name and data, if `object` is one.
pub(crate) fn config_map_of(object: &Value) -> Option<(String, BTreeMap<String, String>)> {
    if object["kind"] != "ConfigMap" {
        return None;
    }
    let data = object["data"].as_object().into_iter().flatten();
    let data = data.map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect();
    Some((object["metadata"]["name"].as_str().unwrap_or_default().to_owned(), data))
}

/// Splits an input into objects: YAML or JSON streams, `kind: List` flattened.
fn documents(input: &Input) -> Result<Vec<Item>, PreviewError> {
    let bad = |document: usize, message: String| PreviewError::Document { file: input.name.clone(), document, message };
    syntax::check_nesting(&input.text).map_err(|m| bad(1, m))?;
    let trimmed = input.text.trim_start_matches('\u{feff}').trim_start();
    let mut raw: Vec<Result<Value, String>> = Vec::new();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let stream = serde_json::Deserializer::from_str(trimmed).into_iter::<Value>();
        raw.extend(stream.map(|r| r.map_err(|e| format!("invalid JSON: {e}"))));
    } else {
        // Read as kubectl reads it (YAML 1.1 scalars, merge keys), aliases within a budget.
        match yaml::documents(&input.text) {
            Ok(docs) => raw.extend(docs.into_iter().map(Ok)),
            Err(e) => {
                raw.extend((1..e.document).map(|_| Ok(Value::Null)));
                raw.push(Err(e.message));
            }
        }
    }
    let mut items = Vec::new();
    for (i, value) in raw.into_iter().enumerate() {
        let document = i + 1;
        let value = value.map_err(|message| bad(document, message))?;
        match &value {
            Value::Null => continue,
            Value::Object(_) => {}
            _ => return Err(bad(document, "is not a Kubernetes object (a mapping with apiVersion and kind)".into())),
        }
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind.is_empty() || value.get("apiVersion").and_then(Value::as_str).is_none() {
            return Err(bad(document, "has no apiVersion and kind".into()));
        }
        let origin = format!("{}, document {document}", input.name);
        match value.get("items") {
            Some(Value::Array(list)) if kind.ends_with("List") => {
                for (n, item) in list.iter().enumerate() {
                    if !item.is_object() || item.get("kind").and_then(Value::as_str).is_none() {
                        return Err(bad(document, format!("items[{n}] has no kind")));
                    }
                    items.push(Item { origin: format!("{origin}, items[{n}]"), value: item.clone() });
                }
            }
            _ => items.push(Item { origin, value }),
        }
    }
    Ok(items)
}

fn label(object: &Value, namespace: &str) -> String {
    let field = |k: &str| object.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).filter(|s| !s.is_empty());
    let name = field("name").map(str::to_owned).or_else(|| field("generateName").map(|g| format!("{g}*")));
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("object");
    format!("{kind} {}/{}", field("namespace").unwrap_or(namespace), name.as_deref().unwrap_or("<unnamed>"))
}

/// Previews one object (an AdmissionReview without an object, such as a DELETE, has `before` null).
fn preview(item: Item, options: &Options) -> Outcome {
    let is_review = item.value.get("kind").and_then(Value::as_str) == Some("AdmissionReview");
    if is_review {
        return preview_review(item, options);
    }
    let object = item.value;
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind_name = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(&options.namespace);
    let mut outcome = Outcome {
        label: label(&object, namespace),
        origin: item.origin,
        before: object.clone(),
        after: object.clone(),
        patch: b"[]".to_vec(),
        warnings: Vec::new(),
        explanation: Err(format!("{kind_name} is not a workload: unchanged")),
    };
    let Some(kind) = WorkloadKind::from_type_meta(api_version, kind_name) else {
        return outcome;
    };
    let current = kind.api_version();
    if api_version != current {
        outcome.warnings.push(format!("{api_version} {kind} is not served by current Kubernetes (use {current})"));
    }
    let ns = options.namespace_meta(namespace);
    let target = Target {
        kind,
        namespace,
        ns: &ns,
        config: &options.config,
        server_version: options.server_version,
        old_template: None,
        stop: Stop::default(),
        config_maps: Some(&options.config_maps),
    };
    let mutation = inject::mutate(&object, &target);
    outcome.warnings.extend(mutation.warnings.into_vec());
    outcome.patch = mutation.patch.to_json();
    if let Err(e) = json_patch::patch(&mut outcome.after, &mutation.patch.to_json_patch()) {
        outcome.warnings.push(format!("internal error: the patch does not apply: {e}"));
    }
    let mut explanation = mutation.explanation;
    if !options.config.handles(kind) {
        explanation.notes.push(format!(
            "the webhook leaves {kind} objects alone (not in workloads); their Pods are instrumented at creation"
        ));
    }
    outcome.explanation = Ok(explanation);
    outcome
}

/// An AdmissionReview goes through the webhook's own code path.
fn preview_review(item: Item, options: &Options) -> Outcome {
    let review = item.value;
    let object = review.pointer("/request/object").cloned().unwrap_or(Value::Null);
    let namespace = review.pointer("/request/namespace").and_then(Value::as_str).unwrap_or(&options.namespace);
    let label = format!(
        "AdmissionReview {} of {}",
        review.pointer("/request/operation").and_then(Value::as_str).unwrap_or("?"),
        label(&object, namespace)
    );
    let ns = options.namespace_meta(namespace);
    let body = serde_json::to_vec(&review).unwrap_or_default();
    let mut outcome = Outcome {
        label,
        origin: item.origin,
        before: object.clone(),
        after: object.clone(),
        patch: b"[]".to_vec(),
        warnings: Vec::new(),
        explanation: Err("no object to preview".to_owned()),
    };
    let parsed = admission::Review::parse(&body, &options.config);
    let answer = match parsed.map(|r| {
        r.answer(&options.config, &ns, options.server_version, Vec::new(), Stop::default(), Some(&options.config_maps))
    }) {
        Ok(answer) => answer,
        Err(e) => {
            outcome.explanation = Err(format!("the webhook would answer HTTP 400: {e}"));
            outcome.warnings.push(e.to_string());
            return outcome;
        }
    };
    outcome.warnings = answer.warnings;
    outcome.explanation = answer.explanation.ok_or_else(|| format!("{}: {}", answer.decision, answer.reason));
    if let Some(bytes) = answer.patch {
        match serde_json::from_slice::<json_patch::Patch>(&bytes) {
            Ok(patch) => {
                if let Err(e) = json_patch::patch(&mut outcome.after, &patch) {
                    outcome.warnings.push(format!("internal error: the patch does not apply: {e}"));
                }
            }
            Err(e) => outcome.warnings.push(format!("internal error: the patch is not JSON Patch: {e}")),
        }
        outcome.patch = bytes;
    }
    outcome
}

fn render(outcomes: &[Outcome], format: OutputFormat, out: &mut dyn Write) -> Result<(), PreviewError> {
    let yaml = |v: &Value| serde_yaml_ng::to_string(v).unwrap_or_default();
    let outcomes: Vec<&Outcome> = outcomes.iter().filter(|o| o.before.is_object()).collect();
    match format {
        OutputFormat::Yaml => {
            for (i, o) in outcomes.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                write!(out, "{}", yaml(&o.after))?;
            }
        }
        OutputFormat::Json => {
            let value = match outcomes.as_slice() {
                [one] => one.after.clone(),
                many => serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": many.iter().map(|o| o.after.clone()).collect::<Vec<_>>(),
                }),
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&value).unwrap_or_default())?;
        }
        OutputFormat::Patch => {
            for o in outcomes {
                out.write_all(&o.patch)?;
                writeln!(out)?;
            }
        }
        OutputFormat::Diff => {
            for o in outcomes.iter().filter(|o| o.before != o.after) {
                let (before, after) = (yaml(&o.before), yaml(&o.after));
                let diff = similar::TextDiff::from_lines(&before, &after);
                let header = diff
                    .unified_diff()
                    .context_radius(3)
                    .header(&format!("{} (original)", o.label), &format!("{} (instrumented)", o.label))
                    .to_string();
                write!(out, "{header}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
// Preview tests: input formats, every output format, explanations, and clear errors for bad input.
mod tests {
    use super::*;
    use crate::engine::config::DefaultMode;
    use crate::testing::fixtures::{container, pod, review};
    use rstest::rstest;
    use serde::Deserialize;

    fn options(output: OutputFormat) -> Options {
        Options::new(output, Config { default: DefaultMode::Inject, ..Config::default() })
    }

    fn preview_text(text: &str, options: &Options) -> Result<(String, String), PreviewError> {
        let input = Input { name: "in.yaml".into(), text: text.into() };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        run(&[input], options, &mut out, &mut err)?;
        Ok((String::from_utf8(out).expect("utf-8"), String::from_utf8(err).expect("utf-8")))
    }

    const TWO_DOCS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
# a comment, then the deployment
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
---
"#;

    #[test]
    fn yaml_out_keeps_every_document_in_order_and_instruments_workloads() {
        let (out, _) = preview_text(TWO_DOCS, &options(OutputFormat::Yaml)).expect("previews");
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&out)
            .map(|d| Value::deserialize(d).expect("valid YAML out"))
            .collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["kind"], "Service");
        assert_eq!(docs[0]["spec"]["ports"][0]["port"], 80);
        let env = &docs[1]["spec"]["template"]["spec"]["containers"][0]["env"];
        assert!(
            env.as_array().is_some_and(|e| e.iter().any(|v| v["name"] == "OTEL_SERVICE_NAME" && v["value"] == "web"))
        );
    }

    #[test]
    fn patch_out_is_one_line_per_object_with_the_webhook_bytes() {
        let (out, _) = preview_text(TWO_DOCS, &options(OutputFormat::Patch)).expect("previews");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "[]");
        let patch: json_patch::Patch = serde_json::from_str(lines[1]).expect("a JSON Patch");
        assert_eq!(patch.0[0].path().as_str(), "/spec/template/spec/containers/0/env");
    }

    #[test]
    fn json_out_is_the_object_or_a_list() {
        let one = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n";
        let (out, _) = preview_text(one, &options(OutputFormat::Json)).expect("previews");
        let value: Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(value["kind"], "Pod");
        let (out, _) = preview_text(TWO_DOCS, &options(OutputFormat::Json)).expect("previews");
        let value: Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!((value["kind"].as_str(), value["items"].as_array().map(Vec::len)), (Some("List"), Some(2)));
    }

    #[test]
    fn diff_out_shows_only_changed_objects() {
        let (out, _) = preview_text(TWO_DOCS, &options(OutputFormat::Diff)).expect("previews");
        assert!(
            out.starts_with("--- Deployment default/web (original)\n+++ Deployment default/web (instrumented)\n"),
            "{out}"
        );
        assert!(out.contains("+        - name: OTEL_SERVICE_NAME"), "{out}");
        assert!(!out.contains("Service"));
    }

    #[test]
    fn explain_goes_to_stderr_per_object() {
        let mut opts = options(OutputFormat::Patch);
        opts.explain = true;
        let (_, err) = preview_text(TWO_DOCS, &opts).expect("previews");
        assert!(
            err.contains("# Service default/web (in.yaml, document 1)\n  Service is not a workload: unchanged"),
            "{err}"
        );
        assert!(err.contains(
            "# Deployment default/web (in.yaml, document 2)\n  decision: instrument (cluster default (inject))"
        ));
        assert!(err.contains("container web: instrumented"));
        assert!(
            err.contains("  sampling ratio = 1 (config)\n  propagators = tracecontext,baggage (config)\n"),
            "{err}"
        );
        assert!(err.contains("not in workloads"), "Deployments are not in the default workloads: {err}");
    }

    #[test]
    fn lists_and_json_streams_are_read() {
        let list = r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c"}]}},
        {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}]}
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"c"},"spec":{"containers":[{"name":"c"}]}}"#;
        let (out, _) = preview_text(list, &options(OutputFormat::Patch)).expect("previews");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_ne!(lines[0], "[]");
        assert_eq!(lines[1], "[]");
        assert_ne!(lines[2], "[]");
    }

    #[test]
    fn namespace_annotations_and_the_namespace_flag_apply() {
        let mut opts = options(OutputFormat::Json);
        opts.config.default = DefaultMode::Skip;
        opts.namespace = "shop".into();
        opts.ns.annotations.insert("otel-injector.io/inject".into(), "true".into());
        let (out, _) =
            preview_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n", &opts)
                .expect("previews");
        assert!(out.contains("k8s.namespace.name=shop"), "{out}");
        assert!(out.contains("namespace annotation otel-injector.io/inject=true"));
    }

    #[test]
    fn admission_reviews_go_through_the_webhook_path() {
        let object = pod("p").container(container("c")).build();
        let create = serde_json::to_string(&review(&object, "CREATE", "shop")).expect("json");
        let (out, _) = preview_text(&create, &options(OutputFormat::Patch)).expect("previews");
        assert!(out.starts_with("[{\"op\":\"add\""), "{out}");
        let mut delete = review(&object, "DELETE", "shop");
        delete["request"]["oldObject"] = delete["request"]["object"].take();
        let mut opts = options(OutputFormat::Yaml);
        opts.explain = true;
        let (out, err) = preview_text(&serde_json::to_string(&delete).expect("json"), &opts).expect("previews");
        assert_eq!(out, "");
        assert!(err.contains("ignored: DELETE is never mutated"), "{err}");
    }

    #[rstest]
    #[case::bad_yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: [\n", "in.yaml: document 1: invalid YAML: ")]
    #[case::bad_escape(
        "a: \"x\\qy\"\n",
        "in.yaml: document 1: invalid YAML: while parsing a quoted scalar, found unknown escape"
    )]
    #[case::second_doc("apiVersion: v1\nkind: Pod\n---\n- a list\n", "in.yaml: document 2: is not a Kubernetes object")]
    #[case::no_kind("metadata: {name: x}\n", "in.yaml: document 1: has no apiVersion and kind")]
    #[case::scalar("just text\n", "in.yaml: document 1: is not a Kubernetes object")]
    #[case::bad_json("{\"apiVersion\": ", "in.yaml: document 1: invalid JSON: ")]
    #[case::bad_item("apiVersion: v1\nkind: List\nitems: [3]\n", "in.yaml: document 1: items[0] has no kind")]
    fn bad_input_is_a_one_line_error_naming_file_and_document(#[case] text: &str, #[case] needle: &str) {
        let err = preview_text(text, &options(OutputFormat::Yaml)).expect_err("bad input").to_string();
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn removed_api_versions_are_previewed_with_a_warning() {
        let text = "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '* * * * *'\n  jobTemplate: {spec: {template: {spec: {containers: [{name: c}]}}}}\n";
        let (out, err) = preview_text(text, &options(OutputFormat::Patch)).expect("previews");
        assert_ne!(out.trim(), "[]");
        assert!(
            err.contains("Warning: CronJob default/c: batch/v1beta1 CronJob is not served by current Kubernetes"),
            "{err}"
        );
    }
}
