//! The binary itself: `certs` output serves the Service's DNS names, `preview` exits non-zero with one-line errors,
//! `serve` refuses bad configuration naming the field, and the kubectl plugin works through real kubectl.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use base64::Engine;
use rustls_pki_types::ServerName;

const BIN: &str = env!("CARGO_BIN_EXE_otel-injector");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("OTEL_INJECTOR_CONFIG").output().expect("binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn certs_issue_a_pair_that_serves_the_service_dns_names_and_extra_sans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&[
        "certs",
        "--service",
        "hook",
        "--namespace",
        "obs",
        "--ip",
        "127.0.0.1",
        "--dns",
        "hook.example",
        "--out-dir",
        &dir.path().to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ca = std::fs::read(dir.path().join("ca.crt")).expect("ca.crt written");
    let bundle = base64::engine::general_purpose::STANDARD.decode(text(&out.stdout).trim()).expect("base64 caBundle");
    assert_eq!(bundle, ca, "stdout is the caBundle of ca.crt");

    otel_injector::webhook::tls::install_crypto_provider();
    let tls = otel_injector::webhook::tls::from_files(&dir.path().join("tls.crt"), &dir.path().join("tls.key"))
        .expect("pair");
    let mut options = otel_injector::webhook::server::ServeOptions::new(
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:0".parse().expect("addr"),
        tls,
    );
    options.drain_delay = std::time::Duration::ZERO;
    let state = otel_injector::webhook::state::AppState::new(Default::default());
    let server = otel_injector::webhook::server::Server::start(options, state).await.expect("serves");
    for name in ["hook.obs.svc", "hook.obs.svc.cluster.local", "hook.example", "127.0.0.1"] {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_pki_types::CertificateDer::pem_slice_iter(&ca).flatten());
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(server.webhook_addr()).await.expect("connect");
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        connector.connect(ServerName::try_from(name).expect("dns name"), tcp).await.expect("certificate verifies");
    }
    server.shutdown().await;
}

#[test]
fn preview_bad_input_is_one_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, "apiVersion: v1\nkind: Pod\n---\nmetadata: {name: [\n").expect("write");
    let out = run(&["preview", "-f", &file.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("error: {}: document 2: invalid YAML", file.display())), "{stderr}");
    assert!(out.stdout.is_empty());
    let missing = run(&["preview", "-f", "/nonexistent.yaml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).starts_with("error: /nonexistent.yaml: No such file"));
}

#[test]
fn preview_reads_stdin() {
    let mut child = Command::new(BIN)
        .args(["preview", "-f", "-", "-o", "patch", "--default", "inject"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n")
        .expect("write");
    let out = child.wait_with_output().expect("exits");
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("[{\"op\":\"add\",\"path\":\"/spec/containers/0/env\""));
}

#[test]
fn serve_refuses_bad_configuration_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "sidecar:\n  imag: typo\n").expect("write");
    let out = run(&["serve", "--dev-certs", "--config", &config.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("error: config sidecar.imag: unknown field `imag`"), "{}", text(&out.stderr));
    let out = run(&["serve", "--dev-certs", "--sampling-ratio", "1.5"]);
    assert!(text(&out.stderr).contains("config samplingRatio: must be a number from 0.0 to 1.0"));
    let out = run(&["serve"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--tls-cert and --tls-key must be set (or --dev-certs"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["serve", "--tls-cert", "/nonexistent/tls.crt", "--tls-key", "/nonexistent/tls.key"]);
    assert!(text(&out.stderr).contains("cannot read /nonexistent/tls.crt"), "{}", text(&out.stderr));
    // A body the budget could never hold (the same check refuses such a config on reload).
    let out = run(&["serve", "--dev-certs", "--body-budget", "1000000"]);
    assert!(
        text(&out.stderr).contains("config maxRequestBytes: 7340032 is more than --body-budget (1000000)"),
        "{}",
        text(&out.stderr)
    );
}

/// `serve` in an environment with no cluster at all: no kubeconfig, not in a pod.
fn serve_without_a_cluster(home: &Path, extra: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(["serve", "--dev-certs", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--log-format", "json"])
        .args(extra)
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("OTEL_INJECTOR_KUBECONFIG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve starts")
}

#[test]
fn serve_without_a_cluster_says_so_once_and_serves_with_empty_namespace_policy() {
    use std::io::BufRead;
    let home = tempfile::tempdir().expect("tempdir");
    let mut child = serve_without_a_cluster(home.path(), &[]);
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    let mut metrics = None;
    for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if v["message"] == "serving" {
            metrics = v["metrics_addr"].as_str().map(str::to_owned);
        }
        lines.push(v);
        if metrics.is_some() {
            break;
        }
    }
    let about_cluster: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["message"].as_str().is_some_and(|m| m.contains("no cluster configured"))).collect();
    assert_eq!(about_cluster.len(), 1, "{lines:?}");
    assert!(about_cluster[0]["message"].as_str().is_some_and(|m| m.contains("namespace policy is empty")));
    let readyz = Command::new("curl")
        .args(["-s", &format!("http://{}/readyz", metrics.expect("serving"))])
        .output()
        .expect("curl");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(text(&readyz.stdout), "ok\n", "ready without a cluster");
}

#[test]
fn serve_refuses_a_kubeconfig_it_cannot_use_naming_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = serve_without_a_cluster(home.path(), &["--kubeconfig", "/nonexistent/kubeconfig"])
        .wait_with_output()
        .expect("exits");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error: kubeconfig /nonexistent/kubeconfig: "), "{stderr}");
}

#[test]
fn audit_without_a_cluster_cannot_run_and_exits_2() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["audit"])
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: no cluster configured"), "{}", text(&out.stderr));
}

#[test]
fn works_as_a_kubectl_plugin() {
    let Ok(kubectl) = which("kubectl") else {
        panic!("kubectl not found on PATH: `make test` installs it");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(BIN, dir.path().join("kubectl-otel_inject")).expect("symlink");
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n")
        .expect("write");
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(kubectl)
        .args(["otel-inject", "-f", &manifest.to_string_lossy(), "-o", "patch", "--default", "inject"])
        .env("PATH", path)
        .output()
        .expect("kubectl runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("[{\"op\":\"add\""), "{}", text(&out.stdout));
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn preview_stops_an_endless_input_at_its_size_limit() {
    let started = std::time::Instant::now();
    let out = run(&["preview", "-f", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr, "error: /dev/zero: larger than 67108864 bytes; preview reads at most that much\n");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn preview_reads_a_manifest_that_starts_with_a_byte_order_mark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bom.yaml");
    std::fs::write(&file, "\u{feff}apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n")
        .expect("write");
    let out = run(&["preview", "-f", &file.to_string_lossy(), "--default", "inject", "-o", "patch"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("[{\"op\":\"add\""));
}

#[test]
fn deeply_nested_input_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("deep.yaml");
    std::fs::write(&file, format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000))).expect("write");
    let started = std::time::Instant::now();
    let preview = run(&["preview", "-f", &file.to_string_lossy()]);
    assert_eq!(text(&preview.stderr), format!("error: {}: document 1: nests deeper than 100 levels\n", file.display()));
    let serve = run(&["serve", "--dev-certs", "--config", &file.to_string_lossy()]);
    assert_eq!(text(&serve.stderr).lines().last(), Some("error: config (document): nests deeper than 100 levels"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn certs_refuses_to_replace_a_ca_unless_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir.path().to_string_lossy().into_owned();
    assert!(run(&["certs", "--out-dir", &dir_arg]).status.success());
    let ca = std::fs::read(dir.path().join("ca.key")).expect("ca.key");
    let again = run(&["certs", "--out-dir", &dir_arg]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("ca.key exists: refusing to replace the CA"), "{}", text(&again.stderr));
    assert_eq!(std::fs::read(dir.path().join("ca.key")).expect("ca.key"), ca, "untouched");
    assert!(run(&["certs", "--out-dir", &dir_arg, "--force"]).status.success());
    assert_ne!(std::fs::read(dir.path().join("ca.key")).expect("ca.key"), ca, "replaced when forced");
}

#[test]
fn an_error_names_its_cause_once() {
    let out = run(&["serve", "--tls-cert", "/nonexistent/tls.crt", "--tls-key", "/nonexistent/tls.key"]);
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = run(&["serve", "--dev-certs", "--listen", &addr, "--metrics-listen", "127.0.0.1:0"]);
    let stderr = text(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(last.matches("Address already in use").count(), 1, "{stderr}");
}

/// What `kubectl` makes of a manifest: `kubectl patch --local` with an empty patch prints each object as it read
/// it (YAML 1.1 scalars, merge keys, lists flattened), offline.
fn as_kubectl_reads(file: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("kubectl")
        .args(["patch", "--local", "--type=merge", "-p", "{}", "-o", "json", "-f"])
        .arg(file)
        .output()
        .expect("kubectl runs (make test installs it)");
    assert!(out.status.success(), "kubectl: {}", text(&out.stderr));
    serde_json::Deserializer::from_slice(&out.stdout).into_iter().collect::<Result<_, _>>().expect("JSON objects")
}

/// What `preview` makes of a manifest, instrumenting nothing: each object as it read it.
fn as_preview_reads(file: &Path, config: &Path) -> Vec<serde_json::Value> {
    let out = run(&["preview", "-o", "json", "--config", &config.to_string_lossy(), "-f", &file.to_string_lossy()]);
    assert!(out.status.success(), "preview {}: {}", file.display(), text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    match value.get("items") {
        Some(serde_json::Value::Array(items)) if value["kind"] == "List" => items.clone(),
        _ => vec![value],
    }
}

#[test]
fn preview_reads_yaml_as_kubectl_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "default: skip\n").expect("write");
    // YAML 1.1 scalars and merge keys, which a YAML 1.2 reader takes otherwise.
    let tricky = dir.path().join("tricky.yaml");
    std::fs::write(
        &tricky,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: &l {app: web, tier: \"yes\"}\n  annotations:\n    \
         <<: {a: \"1\", b: \"2\"}\n    b: three\n    octal: \"0644\"\nspec:\n  containers:\n  - name: c\n    image: x\n  \
         volumes:\n  - name: v\n    configMap: {name: cm, defaultMode: 0644}\n  - name: w\n    secret: {secretName: s, \
         defaultMode: 0o644}\n  - name: u\n    secret: {secretName: s, defaultMode: 1_0}\n  - name: x\n    secret: \
         {secretName: s, defaultMode: 08}\n",
    )
    .expect("write");
    let read = as_preview_reads(&tricky, &config);
    assert_eq!(read, as_kubectl_reads(&tricky));
    assert_eq!(read[0]["spec"]["volumes"][0]["configMap"]["defaultMode"], 420, "0644 is octal");
    assert_eq!(read[0]["metadata"]["annotations"]["a"], "1", "merge keys apply");
    // And every manifest of the corpus.
    for file in common::corpus::files("manifests") {
        assert_eq!(as_preview_reads(&file, &config), as_kubectl_reads(&file), "{}", file.display());
    }
}

#[test]
fn preview_refuses_aliases_that_expand_past_its_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = "x".repeat(200 * 1024);
    let aliases: String = (0..20_000).map(|i| format!("    k{i}: *big\n")).collect();
    let file = dir.path().join("bomb.yaml");
    std::fs::write(
        &file,
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\n  annotations: {{a: &big {big}}}\ndata:\n{aliases}"),
    )
    .expect("write");
    let started = std::time::Instant::now();
    let out = run(&["preview", "-f", &file.to_string_lossy()]);
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(said.contains("aliases expand this input past 64 MiB (refused)"), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    // Before: preview grew to about 2.9 GB and was killed.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn serve_warns_about_a_config_header_that_looks_like_a_credential() {
    use std::io::BufRead;
    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join("config.yaml");
    std::fs::write(&config, "headers:\n  X-Scope-OrgID: prod\n  Authorization: Bearer secret-token\n").expect("write");
    let mut child = serve_without_a_cluster(home.path(), &["--config", &config.to_string_lossy()]);
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        let serving = v["message"] == "serving";
        lines.push(v);
        if serving {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let warnings: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["level"] == "WARN" && l["header"].is_string()).collect();
    assert_eq!(warnings.len(), 1, "one header looks like a credential: {lines:?}");
    assert_eq!(warnings[0]["header"], "Authorization");
    let message = warnings[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("readable by anyone who may read pods"), "{message}");
    assert!(!lines.iter().any(|l| l.to_string().contains("secret-token")), "the value itself is never logged");
}

/// Issue 22: `preview --explain` says which agent, how it is delivered and why, by the server version given.
#[test]
fn preview_explains_the_agent_and_its_delivery() {
    for (version, delivery, marker) in
        [("1.37", "image-volume", "reference: ghcr.io/"), ("1.20", "init-container", "name: otel-agent-java\n")]
    {
        let out = run(&["preview", "-f", "examples/agents.yaml", "--kube-version", version, "--explain", "-o", "yaml"]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{stderr}");
        let all = format!("{stdout}{stderr}");
        let line = format!("agents: java by {delivery}");
        assert!(all.contains(&line), "{version}: {all}");
        assert!(all.contains("activated by JAVA_TOOL_OPTIONS"), "{all}");
        assert!(
            stdout.contains("value: -Xmx512m -javaagent:/otel-auto-instrumentation-java/javaagent.jar"),
            "{stdout}"
        );
        assert!(stdout.contains(marker), "{version}: {stdout}");
    }
}
