//! A real Kubernetes control plane (scripts/cluster.sh: the current release with its controllers and scheduler, or
//! v1.20 for what needs an old API server), its own `kubectl`, and the real `otel-injector serve` binary registered as
//! a mutating webhook through `clientConfig.url`.
//!
//! Every webhook gets a scope: its MutatingWebhookConfiguration only selects namespaces labelled with that scope,
//! so tests share one API server without seeing each other's webhooks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use base64::Engine;
use otel_injector::webhook::certs;
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_otel-injector");
/// The label that puts a namespace in a webhook's scope.
pub const SCOPE_LABEL: &str = "e2e.otel-injector.io/scope";

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh DNS-label name starting with `prefix`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id() % 100_000, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Taken by the tests that load the machine most (the SDK applications, the hostile tenants' processes): on two cores
/// shared with the rest of the suite, two of them at once make each other's timings fail. One at a time.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held by a test while a collector sidecar it runs listens on localhost:4317, :4318 and 13133 (as in a pod): one
/// at a time in this process.
pub static SIDECAR_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Retries `probe` every 100 ms until it returns `Some`, for at most `within`.
pub fn eventually<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// etcd and kube-apiserver v1.20 on 127.0.0.1, with an admin kubeconfig.
pub struct Cluster {
    dir: PathBuf,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    dedicated: bool,
}

/// Which Kubernetes a cluster runs (scripts/cluster.sh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The current release, with its controllers and scheduler (tools/kubernetes).
    Current,
    /// kube-apiserver v1.20 alone, for what needs an old API server.
    Old,
}

impl Lane {
    fn arg(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Old => "1.20",
        }
    }
}

impl Cluster {
    /// The current control plane shared by this test binary, started on first use and stopped when the process
    /// exits.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(|| Cluster::up(false, Lane::Current))
    }

    /// The v1.20 API server shared by this test binary, for what needs an old one.
    pub fn old() -> &'static Cluster {
        static OLD: OnceLock<Cluster> = OnceLock::new();
        OLD.get_or_init(|| Cluster::up(false, Lane::Old))
    }

    /// The CA of the client certificate the API server presents to webhooks (for `--client-ca`).
    pub fn client_ca(&self) -> PathBuf {
        self.dir.join("pki/apiserver-client-ca.crt")
    }

    /// A current control plane of one's own (for tests that restart it), stopped on drop.
    pub fn dedicated() -> Cluster {
        Cluster::up(true, Lane::Current)
    }

    fn up(dedicated: bool, lane: Lane) -> Cluster {
        let dir = std::env::temp_dir().join(unique("otel-injector-e2e"));
        let started = Instant::now();
        let out = Command::new(repo().join("scripts/cluster.sh"))
            .arg("up")
            .arg(&dir)
            .arg(lane.arg())
            .env("OTEL_INJECTOR_BIN", BIN)
            .env("OWNER_PID", std::process::id().to_string())
            .output()
            .expect("scripts/cluster.sh runs");
        assert!(
            out.status.success(),
            "the control plane did not start (make test builds it: scripts/control-plane.sh, scripts/kube-apiserver.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("control plane ({}) up in {:?} ({})", lane.arg(), started.elapsed(), dir.display());
        Cluster { kubeconfig: dir.join("kubeconfig"), dir, dedicated }
    }

    /// The kubectl of the cluster's own release.
    pub fn kubectl_path(&self) -> PathBuf {
        self.dir.join("bin/kubectl")
    }

    /// Runs `kubectl` against this API server, with `stdin` if given.
    pub fn kubectl_with(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(self.kubectl_path());
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig);
        run(cmd, stdin)
    }

    /// Creates `pod` in `namespace` with `--dry-run=server` every 100 ms until the answer satisfies `check` (the
    /// webhook follows namespace changes and new registrations within a moment); how long that took, if it did.
    pub fn dry_run_until(&self, namespace: &str, pod: &Value, check: impl Fn(&Value) -> bool) -> Option<Duration> {
        let start = Instant::now();
        let args = ["create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-"];
        eventually(Duration::from_secs(20), || {
            let out = self.kubectl_with(&args, Some(&pod.to_string()));
            let answer: Value = serde_json::from_slice(&out.stdout).ok()?;
            check(&answer).then(|| start.elapsed())
        })
    }

    /// Runs `kubectl` and returns its stdout; panics with its stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_ok(args, None)
    }

    /// Runs `kubectl` with `stdin` and returns its stdout; panics with its stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_with(args, stdin);
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// `kubectl create -f - -o json` of `object` in `namespace`: the object as stored.
    pub fn create(&self, namespace: &str, object: &Value) -> Value {
        let out = self.kubectl_ok(&["create", "-n", namespace, "-o", "json", "-f", "-"], Some(&object.to_string()));
        serde_json::from_str(&out).expect("kubectl prints JSON")
    }

    /// `kubectl get -o json`.
    pub fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get", "-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.kubectl(&all)).expect("kubectl prints JSON")
    }

    /// Creates a namespace with these labels and annotations.
    pub fn namespace(&self, name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) {
        let map =
            |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": map(labels), "annotations": map(annotations)}});
        self.kubectl_ok(&["create", "-f", "-"], Some(&ns.to_string()));
        // Where controllers run, a pod can be created once the namespace has its `default` service account.
        if std::fs::read_to_string(self.dir.join("lane")).is_ok_and(|l| l.trim() == "current") {
            let has_account =
                || self.kubectl_with(&["get", "serviceaccount", "default", "-n", name], None).status.success();
            assert!(eventually(Duration::from_secs(20), || has_account().then_some(())).is_some(), "no default SA");
        }
    }

    /// Stops kube-apiserver and starts it again on the same etcd and port.
    pub fn restart_apiserver(&self) {
        let out = Command::new(repo().join("scripts/cluster.sh"))
            .arg("restart-apiserver")
            .arg(&self.dir)
            .output()
            .expect("scripts/cluster.sh runs");
        assert!(out.status.success(), "restart failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.dedicated {
            let _ = Command::new(repo().join("scripts/cluster.sh")).arg("down").arg(&self.dir).arg("--purge").output();
        }
    }
}

/// A serving certificate for 127.0.0.1 and its CA bundle, shared by every webhook of this test binary.
pub struct Pki {
    /// Directory with tls.crt and tls.key.
    pub dir: PathBuf,
    /// The caBundle for the webhook configuration.
    pub ca_bundle: String,
}

/// The test binary's webhook certificate.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        // Under target/ (cargo's scratch space for integration tests), rewritten by every run.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-pki");
        let issued = certs::issue(&["127.0.0.1".to_owned(), "localhost".to_owned()], 2).expect("certificates");
        certs::write(&issued, &dir).expect("written");
        Pki { dir, ca_bundle: certs::ca_bundle(&issued) }
    })
}

/// How a webhook is registered.
#[derive(Debug, Clone)]
pub struct Registration {
    /// `failurePolicy`.
    pub failure_policy: &'static str,
    /// `reinvocationPolicy`.
    pub reinvocation: &'static str,
}

impl Default for Registration {
    fn default() -> Self {
        Self { failure_policy: "Ignore", reinvocation: "IfNeeded" }
    }
}

/// The MutatingWebhookConfiguration of one scoped webhook at `url`: pods on CREATE, workloads on CREATE and UPDATE.
pub fn webhook_configuration(name: &str, scope: &str, url: &str, ca_bundle: &str, r: &Registration) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: {name}
webhooks:
- name: {name}.otel-injector.io
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: {failure}
  reinvocationPolicy: {reinvocation}
  matchPolicy: Equivalent
  timeoutSeconds: 5
  namespaceSelector:
    matchLabels: {{"{SCOPE_LABEL}": "{scope}"}}
  clientConfig:
    url: {url}
    caBundle: {ca_bundle}
  rules:
  - {{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}}
  - apiGroups: [apps, batch]
    apiVersions: ["*"]
    operations: [CREATE, UPDATE]
    resources: [deployments, statefulsets, daemonsets, replicasets, jobs, cronjobs]
"#,
        failure = r.failure_policy,
        reinvocation = r.reinvocation,
    )
}

/// A dry-run pod that any instrumenting webhook of the scope mutates (it opts in itself, without a sidecar, which
/// some configurations would make the API server refuse).
pub fn probe_pod() -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "probe-",
            "annotations": {"otel-injector.io/inject": "true", "otel-injector.io/sidecar": "false"}},
        "spec": {"containers": [{"name": "probe", "image": "probe:1"}]}})
}

/// `otel-injector serve` against a cluster, registered for its own scope.
pub struct Webhook<'c> {
    cluster: &'c Cluster,
    child: Option<Child>,
    /// The scope label value of its namespaces.
    pub scope: String,
    /// `http://127.0.0.1:<port>` of health and metrics.
    pub ops: String,
    /// `https://127.0.0.1:<port>/mutate`.
    pub url: String,
    /// Its config file.
    pub config: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    registration: Registration,
    /// Extra environment (the `OTEL_*` of the test's own are never inherited).
    env: Vec<(String, String)>,
    /// Extra `serve` flags.
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl<'c> Webhook<'c> {
    /// Starts the webhook with `config_yaml`, registers it for a fresh scope, and waits until the API server calls
    /// it.
    pub fn start(cluster: &'c Cluster, config_yaml: &str) -> Self {
        Self::start_with(cluster, config_yaml, &Registration::default())
    }

    /// [`Webhook::start`] with a registration of one's own.
    pub fn start_with(cluster: &'c Cluster, config_yaml: &str, registration: &Registration) -> Self {
        Self::start_with_env(cluster, config_yaml, registration, &[])
    }

    /// [`Webhook::start_with`] with environment variables (e.g. where to export its traces).
    pub fn start_with_env(
        cluster: &'c Cluster,
        config_yaml: &str,
        registration: &Registration,
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch(cluster, config_yaml, registration, env, &[])
    }

    /// [`Webhook::start`] with extra `serve` flags.
    pub fn start_with_args(cluster: &'c Cluster, config_yaml: &str, args: &[&str]) -> Self {
        Self::launch(cluster, config_yaml, &Registration::default(), &[], args)
    }

    fn launch(
        cluster: &'c Cluster,
        config_yaml: &str,
        registration: &Registration,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, config_yaml).expect("write config");
        let mut hook = Webhook {
            cluster,
            child: None,
            ops: String::new(),
            url: String::new(),
            scope: unique("s"),
            config,
            logs: Arc::default(),
            registration: registration.clone(),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            _dir: dir,
        };
        hook.run();
        hook
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops the process and starts it again with `config_yaml` (on new ports, registered again).
    pub fn restart(&mut self, config_yaml: &str) {
        self.stop();
        std::fs::write(&self.config, config_yaml).expect("write config");
        self.run();
    }

    /// Spawns `serve`, waits until it is ready, registers it, and waits until the API server calls it.
    fn run(&mut self) {
        let pki = pki();
        let mut command = Command::new(BIN);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")) {
            command.env_remove(key);
        }
        let mut child = command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(&self.config)
            .arg("--kubeconfig")
            .arg(&self.cluster.kubeconfig)
            .arg("--tls-cert")
            .arg(pki.dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(pki.dir.join("tls.key"))
            .args(&self.args)
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("otel-injector serve starts");
        let (addrs, serving) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn({
            let logs = self.logs.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["message"] == "serving"
                    {
                        let addr = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                        let _ = addrs.send((addr("webhook_addr"), addr("metrics_addr")));
                    }
                    logs.lock().expect("logs").push(line);
                }
            }
        });
        self.child = Some(child);
        let (webhook_addr, metrics_addr) = serving.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| {
            panic!("the webhook did not start: {}", self.logs());
        });
        self.ops = format!("http://{metrics_addr}");
        self.url = format!("https://{webhook_addr}/mutate");
        let ready = eventually(Duration::from_secs(20), || (self.http_get("/readyz").0 == 200).then_some(()));
        assert!(ready.is_some(), "the webhook never became ready: {}", self.logs());
        let yaml = webhook_configuration(&self.name(), &self.scope, &self.url, &pki.ca_bundle, &self.registration);
        self.cluster.kubectl_ok(&["apply", "-f", "-"], Some(&yaml));
        // The API server picks up a new configuration within a moment: wait until it calls this webhook.
        let active = self.cluster.dry_run_until(&self.namespace(&[]), &probe_pod(), |pod| status_of(pod).is_some());
        assert!(active.is_some(), "the API server never called the webhook: {}", self.logs());
    }

    /// The name of its MutatingWebhookConfiguration.
    pub fn name(&self) -> String {
        format!("e2e-{}", self.scope)
    }

    /// A fresh namespace in this webhook's scope, with these annotations.
    pub fn namespace(&self, annotations: &[(&str, &str)]) -> String {
        let name = unique(&self.scope);
        self.cluster.namespace(&name, &[(SCOPE_LABEL, &self.scope)], annotations);
        name
    }

    /// Stops the process; its registration stays (the API server then cannot reach it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// GET on the plain port: status and body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        super::common::curl_get(&format!("{}{path}", self.ops))
    }

    /// The value of a metric line starting with `series` (name and labels), if exported.
    pub fn metric(&self, series: &str) -> Option<f64> {
        super::common::metric_in(&self.http_get("/metrics").1, series)
    }

    /// Runs a command of the binary (`audit`, `preview`) against this cluster.
    pub fn command(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg("--kubeconfig").arg(&self.cluster.kubeconfig).env_remove("KUBECONFIG");
        run(cmd, stdin)
    }
}

impl Drop for Webhook<'_> {
    fn drop(&mut self) {
        self.stop();
        let _ = self.cluster.kubectl_with(
            &["delete", "mutatingwebhookconfiguration", &self.name(), "--ignore-not-found", "--wait=false"],
            None,
        );
    }
}

/// Runs `cmd` to completion, feeding it `stdin` if given.
fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the command runs");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("the command finishes")
}

/// The `otel-injector.io/status` annotation of a pod template (or pod), parsed.
pub fn status_of(template: &Value) -> Option<Value> {
    serde_json::from_str(template["metadata"]["annotations"]["otel-injector.io/status"].as_str()?).ok()
}

/// A container's literal env values by name.
pub fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?.to_owned(), e["value"].as_str().unwrap_or_default().to_owned())))
        .collect()
}

/// The named container of a pod spec (regular or init).
pub fn container<'a>(spec: &'a Value, name: &str) -> Option<&'a Value> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| spec[list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
}

/// A pod manifest with one container per name.
pub fn pod(name: &str, annotations: &[(&str, &str)], containers: &[&str]) -> Value {
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    let containers: Vec<Value> =
        containers.iter().map(|c| serde_json::json!({"name": c, "image": format!("{c}:1.0")})).collect();
    serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": containers}})
}

/// Reads a file under the repository.
pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(repo().join(path)).expect("read")
}

/// The base64 of `text` (for caBundles).
pub fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}
