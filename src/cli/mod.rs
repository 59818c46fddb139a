//! The command line: `serve`, `preview` and `certs`, every flag with an `OTEL_INJECTOR_*` variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cluster::client::Source;
use crate::engine::config::{Config, ConfigError, DefaultMode};
use crate::engine::policy::NamespaceMeta;
use crate::engine::syntax::{self, KubeVersion, Protocol};
use crate::engine::workload::WorkloadKind;
use crate::telemetry::LogFormat;
use crate::webhook::defaults;

pub mod audit;
pub mod certs;
pub mod env;
pub mod preview;
pub mod serve;

/// The name the binary answers to as a kubectl plugin (`kubectl otel-inject`).
pub(crate) const PLUGIN_NAME: &str = "kubectl-otel_inject";

/// otel-injector: instruments Kubernetes workloads with OpenTelemetry at admission.
#[derive(Debug, Parser)]
#[command(name = "otel-injector", version, about, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the mutating admission webhook.
    Serve(ServeArgs),
    /// Show offline what the webhook would do to manifests or AdmissionReviews.
    Preview(PreviewArgs),
    /// Write a CA and a serving certificate for the webhook Service, and print the caBundle.
    Certs(CertsArgs),
    /// List objects whose instrumentation does not match the current config and namespace policy (read-only).
    Audit(AuditArgs),
    /// Print the environment each container's process will see, resolved as the kubelet does (Secrets redacted).
    Env(EnvArgs),
}

/// How to reach the cluster.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    /// Kubeconfig file (default: KUBECONFIG, then the pod's service account, then ~/.kube/config).
    #[arg(long, env = "OTEL_INJECTOR_KUBECONFIG", value_name = "FILE", display_order = 800)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, env = "OTEL_INJECTOR_CONTEXT", value_name = "NAME", display_order = 801)]
    pub context: Option<String>,
}

impl ClusterArgs {
    /// Where the connection comes from.
    pub fn source(&self) -> Source {
        Source { kubeconfig: self.kubeconfig.clone(), context: self.context.clone() }
    }
}

/// A ConfigMap named `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRef {
    /// Its namespace (the webhook's own, by convention).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// The config of `--config-from-cluster` (with the flags' overrides, and the ConfigMap's namespace, the webhook's
/// own, excluded), or else of `--config`.
pub(crate) async fn load_config(
    client: &kube::Client,
    args: &ConfigArgs,
    from: Option<&ConfigMapRef>,
) -> anyhow::Result<Config> {
    use anyhow::Context;
    match from {
        None => Ok(args.load()?),
        Some(r) => {
            let text = crate::cluster::snapshot::config_text(client, &r.namespace, &r.name).await?;
            let config = Config::from_yaml(&text).with_context(|| format!("ConfigMap {}/{}", r.namespace, r.name))?;
            let mut config = args.over(config)?;
            config.exclude(&r.namespace);
            Ok(config)
        }
    }
}

fn parse_config_map(s: &str) -> Result<ConfigMapRef, String> {
    match s.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ConfigMapRef { namespace: namespace.to_owned(), name: name.to_owned() })
        }
        _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
    }
}

/// Logging flags.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, global = true, env = "OTEL_INJECTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, display_order = 900)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `otel_injector=debug`); unset, `RUST_LOG` is used.
    #[arg(long, global = true, env = "OTEL_INJECTOR_LOG", value_name = "FILTER", display_order = 901)]
    pub log_level: Option<String>,
}

/// Flags that override the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Configuration file (YAML); every key has a default, so it is optional.
    #[arg(long, env = "OTEL_INJECTOR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides `default` (inject | skip).
    #[arg(long = "default", env = "OTEL_INJECTOR_DEFAULT", value_name = "MODE", value_parser = parse_default)]
    pub default_mode: Option<DefaultMode>,
    /// Overrides `workloads` (comma list of Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob).
    #[arg(long, env = "OTEL_INJECTOR_WORKLOADS", value_name = "KINDS", value_delimiter = ',', value_parser = parse_workload)]
    pub workloads: Option<Vec<WorkloadKind>>,
    /// Overrides `endpoint`.
    #[arg(long, env = "OTEL_INJECTOR_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// Overrides `protocol` (grpc | http/protobuf).
    #[arg(long, env = "OTEL_INJECTOR_PROTOCOL", value_name = "PROTOCOL", value_parser = Protocol::parse)]
    pub protocol: Option<Protocol>,
    /// Overrides `samplingRatio`.
    #[arg(long, env = "OTEL_INJECTOR_SAMPLING_RATIO", value_name = "RATIO")]
    pub sampling_ratio: Option<f64>,
    /// Overrides `serviceNamespace`.
    #[arg(long, env = "OTEL_INJECTOR_SERVICE_NAMESPACE", value_name = "NAME")]
    pub service_namespace: Option<String>,
    /// Overrides `sidecar.enabled`.
    #[arg(long, env = "OTEL_INJECTOR_SIDECAR", value_name = "BOOL", value_parser = syntax::parse_bool)]
    pub sidecar: Option<bool>,
    /// Overrides `sidecar.image`.
    #[arg(long, env = "OTEL_INJECTOR_SIDECAR_IMAGE", value_name = "IMAGE")]
    pub sidecar_image: Option<String>,
    /// Overrides `maxRequestBytes`.
    #[arg(long, env = "OTEL_INJECTOR_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub max_request_bytes: Option<usize>,
}

impl ConfigArgs {
    /// The config file (or the defaults) with these overrides applied, validated.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                Config::from_yaml(&text)?
            }
            None => Config::default(),
        };
        self.over(config)
    }

    /// `config` (e.g. read from a ConfigMap) with these overrides applied, validated.
    pub fn over(&self, mut config: Config) -> Result<Config, ConfigError> {
        if let Some(v) = self.default_mode {
            config.default = v;
        }
        if let Some(v) = &self.workloads {
            config.workloads = v.clone();
        }
        if let Some(v) = &self.endpoint {
            config.endpoint = v.clone();
            // A flag's endpoint brings the protocol its port says, unless a protocol flag names one.
            if let Some(protocol) = syntax::transport_of(v) {
                config.protocol = protocol;
            }
        }
        if let Some(v) = self.protocol {
            config.protocol = v;
        }
        if let Some(v) = self.sampling_ratio {
            config.sampling_ratio = v;
        }
        if let Some(v) = &self.service_namespace {
            config.service_namespace = Some(v.clone());
        }
        if let Some(v) = self.sidecar {
            config.sidecar.enabled = v;
        }
        if let Some(v) = &self.sidecar_image {
            config.sidecar.image = v.clone();
        }
        if let Some(v) = self.max_request_bytes {
            config.max_request_bytes = v;
        }
        config.validate()?;
        Ok(config)
    }
}

/// `serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TLS address of the webhook.
    #[arg(long, env = "OTEL_INJECTOR_LISTEN", default_value = defaults::LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Plain-HTTP address of /healthz, /readyz and /metrics.
    #[arg(long, env = "OTEL_INJECTOR_METRICS_LISTEN", default_value = defaults::METRICS_LISTEN, value_name = "ADDR")]
    pub metrics_listen: SocketAddr,
    /// Serving certificate (PEM).
    #[arg(long, env = "OTEL_INJECTOR_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving certificate's private key (PEM).
    #[arg(long, env = "OTEL_INJECTOR_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Generate a self-signed certificate in memory (development only).
    #[arg(long, env = "OTEL_INJECTOR_DEV_CERTS", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub dev_certs: bool,
    /// Require client certificates signed by the CAs in this PEM file (API servers configured to present one).
    #[arg(long, env = "OTEL_INJECTOR_CLIENT_CA", value_name = "FILE", conflicts_with = "dev_certs")]
    pub client_ca: Option<PathBuf>,
    /// How often the certificate, key, client CA and config files are also read again and compared (besides
    /// watching their directories).
    #[arg(long, env = "OTEL_INJECTOR_RELOAD_INTERVAL", default_value = defaults::RELOAD_INTERVAL, value_parser = syntax::parse_duration)]
    pub reload_interval: Duration,
    /// The webhook's own namespace, never instrumented (default: POD_NAMESPACE or the service account's).
    #[arg(long, env = "OTEL_INJECTOR_WEBHOOK_NAMESPACE", value_name = "NAME")]
    pub webhook_namespace: Option<String>,
    /// Longest wait for a TLS handshake, a started request's headers, or its body.
    #[arg(long, env = "OTEL_INJECTOR_READ_TIMEOUT", default_value = defaults::READ_TIMEOUT, value_parser = syntax::parse_duration)]
    pub read_timeout: Duration,
    /// How long an idle keep-alive connection stays open (longer than the API server's 90 s).
    #[arg(long, env = "OTEL_INJECTOR_IDLE_TIMEOUT", default_value = defaults::IDLE_TIMEOUT, value_parser = syntax::parse_duration)]
    pub idle_timeout: Duration,
    /// How long a new connection has to send its first request, TLS handshake included (within the idle timeout).
    #[arg(long, env = "OTEL_INJECTOR_FIRST_REQUEST_TIMEOUT", default_value = defaults::FIRST_REQUEST_TIMEOUT, value_parser = syntax::parse_duration)]
    pub first_request_timeout: Duration,
    /// How long an answer may go untaken by its client (a peer that does not read) before the connection is cut.
    #[arg(long, env = "OTEL_INJECTOR_WRITE_TIMEOUT", default_value = defaults::WRITE_TIMEOUT, value_parser = syntax::parse_duration)]
    pub write_timeout: Duration,
    /// Reviews worked on at once before answering 503 (bodies still arriving do not count).
    #[arg(long, env = "OTEL_INJECTOR_MAX_IN_FLIGHT", default_value_t = defaults::MAX_IN_FLIGHT, value_name = "N")]
    pub max_in_flight: usize,
    /// Connections open at once, per port; at the cap the one that has waited longest without a request gives way,
    /// and when all are answering, a new one is closed at once.
    #[arg(long, env = "OTEL_INJECTOR_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,
    /// Bytes of request bodies longer than 64 KiB held in memory at once, across all requests (at least
    /// maxRequestBytes; the first 64 KiB of each body come from a further 4 MiB).
    #[arg(long, env = "OTEL_INJECTOR_BODY_BUDGET", default_value_t = defaults::BODY_BUDGET, value_name = "BYTES")]
    pub body_budget: usize,
    /// How long after SIGTERM the webhook keeps serving while /readyz says not ready (endpoint removal takes a
    /// few seconds to reach every API server).
    #[arg(long, env = "OTEL_INJECTOR_DRAIN_DELAY", default_value = defaults::DRAIN_DELAY, value_parser = syntax::parse_duration)]
    pub drain_delay: Duration,
    /// How long in-flight reviews may take to finish once the webhook stops accepting; with the drain delay it
    /// must fit in the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "OTEL_INJECTOR_SHUTDOWN_GRACE", default_value = defaults::SHUTDOWN_GRACE, value_parser = syntax::parse_duration)]
    pub shutdown_grace: Duration,
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The cluster whose namespaces and version the webhook watches (none configured: no namespace policy).
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Output of `preview`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The objects, mutated, as YAML documents.
    Yaml,
    /// The objects, mutated, as JSON (a List when there are several).
    Json,
    /// One JSON Patch per object per line, exactly as the webhook would send it.
    Patch,
    /// A unified diff per changed object.
    Diff,
}

/// `preview` flags.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// Manifest or AdmissionReview file (YAML or JSON, multi-document, `kind: List`); `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
    /// Say on stderr, per object and container, what was decided and why.
    #[arg(long)]
    pub explain: bool,
    /// Namespace of objects that do not name one.
    #[arg(short, long, value_name = "NAME", default_value = "default")]
    pub namespace: String,
    /// An annotation of the namespace (repeatable), e.g. otel-injector.io/inject=true.
    #[arg(long = "namespace-annotation", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub namespace_annotations: Vec<(String, String)>,
    /// A label of the namespace (repeatable).
    #[arg(long = "namespace-label", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub namespace_labels: Vec<(String, String)>,
    /// Preview for this API server version (decides `sidecar.mode: auto` and `agents.delivery: auto`; default:
    /// native sidecars, agents by init container).
    #[arg(long, value_name = "VERSION", value_parser = KubeVersion::parse)]
    pub kube_version: Option<KubeVersion>,
    /// Read the namespaces' labels and annotations and the server version from the current kubeconfig context
    /// (flags given as well override them).
    #[arg(long)]
    pub from_cluster: bool,
    /// Read the config from this ConfigMap (its `config.yaml` key) instead of --config.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_config_map, conflicts_with = "config")]
    pub config_from_cluster: Option<ConfigMapRef>,
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The cluster (with --from-cluster or --config-from-cluster).
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl PreviewArgs {
    /// The namespace metadata given on the command line.
    pub(crate) fn namespace_meta(&self) -> NamespaceMeta {
        let map = |pairs: &[(String, String)]| pairs.iter().cloned().collect::<BTreeMap<_, _>>();
        NamespaceMeta { annotations: map(&self.namespace_annotations), labels: map(&self.namespace_labels) }
    }
}

/// `env` flags.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Manifest file (YAML or JSON, multi-document; ConfigMaps in it are used); `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required_unless_present = "from_cluster")]
    pub files: Vec<String>,
    /// Only this container (default: every container, init containers first).
    #[arg(short, long, value_name = "NAME")]
    pub container: Option<String>,
    /// Read this pod (`pod/NAME`) and the ConfigMaps it draws from from the current kubeconfig context.
    #[arg(long, value_name = "pod/NAME", conflicts_with = "files")]
    pub from_cluster: Option<String>,
    /// The pod's namespace (with --from-cluster).
    #[arg(short, long, value_name = "NAME", default_value = "default")]
    pub namespace: String,
    /// The cluster (with --from-cluster).
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `certs` flags.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Name of the webhook Service.
    #[arg(long, env = "OTEL_INJECTOR_CERTS_SERVICE", default_value = "otel-injector", value_name = "NAME")]
    pub service: String,
    /// Namespace of the webhook Service.
    #[arg(short, long, env = "OTEL_INJECTOR_CERTS_NAMESPACE", default_value = "otel-injector", value_name = "NAME")]
    pub namespace: String,
    /// Directory for ca.crt, ca.key, tls.crt and tls.key.
    #[arg(long, env = "OTEL_INJECTOR_CERTS_DIR", default_value = "certs", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Validity of the serving certificate in days (the CA gets twice as long).
    #[arg(long, env = "OTEL_INJECTOR_CERTS_DAYS", default_value_t = 365)]
    pub days: u32,
    /// Overwrite a CA key already in the directory (a new CA invalidates every caBundle that trusts the old one).
    #[arg(long, env = "OTEL_INJECTOR_CERTS_FORCE")]
    pub force: bool,
    /// An extra IP address the certificate is valid for (repeatable), e.g. 127.0.0.1 for a webhook registered
    /// with `clientConfig.url`.
    #[arg(long = "ip", env = "OTEL_INJECTOR_CERTS_IPS", value_name = "ADDR", value_delimiter = ',')]
    pub ips: Vec<std::net::IpAddr>,
    /// An extra DNS name the certificate is valid for (repeatable).
    #[arg(long = "dns", env = "OTEL_INJECTOR_CERTS_DNS", value_name = "NAME", value_delimiter = ',')]
    pub dns: Vec<String>,
}

/// Output of `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    /// Aligned columns.
    Table,
    /// A JSON array of findings.
    Json,
}

/// `audit` flags.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this namespace (default: all namespaces).
    #[arg(short, long, env = "OTEL_INJECTOR_AUDIT_NAMESPACE", value_name = "NAME")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short, long, env = "OTEL_INJECTOR_AUDIT_OUTPUT", value_enum, default_value_t = AuditFormat::Table)]
    pub output: AuditFormat,
    /// The webhook's own namespace, never instrumented (that of --config-from-cluster is excluded too).
    #[arg(long, env = "OTEL_INJECTOR_WEBHOOK_NAMESPACE", value_name = "NAME")]
    pub webhook_namespace: Option<String>,
    /// Read the config from this ConfigMap (its `config.yaml` key) instead of --config.
    #[arg(long, env = "OTEL_INJECTOR_CONFIG_FROM_CLUSTER", value_name = "NAMESPACE/NAME", value_parser = parse_config_map, conflicts_with = "config")]
    pub config_from_cluster: Option<ConfigMapRef>,
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Parses argv, turning `kubectl-otel_inject ARGS` into `otel-injector preview ARGS`.
pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Cli, clap::Error> {
    let mut args: Vec<_> = args.into_iter().collect();
    let invoked_as = args.first().and_then(|a| std::path::Path::new(a).file_name()).map(|n| n.to_owned());
    if invoked_as.is_some_and(|n| n == PLUGIN_NAME) {
        // `kubectl otel-inject -f x` previews; `kubectl otel-inject env -f x` resolves the environment.
        if args.get(1).is_some_and(|a| a == "env") {
            args[0] = "otel-injector".into();
        } else {
            args.splice(0..1, ["otel-injector".into(), "preview".into()]);
        }
    }
    Cli::try_parse_from(args)
}

/// The CLI reference of docs/cli.md: every command's help, rendered by clap (env values hidden, 100 columns).
pub fn reference_markdown() -> String {
    use clap::CommandFactory;
    fn stable(cmd: clap::Command) -> clap::Command {
        cmd.term_width(100).mut_args(|a| a.hide_env_values(true))
    }
    let mut root = stable(Cli::command());
    let mut out = format!("```text\n$ otel-injector --help\n{}```\n", root.render_help());
    let names: Vec<String> = root.get_subcommands().map(|c| c.get_name().to_owned()).collect();
    for name in names {
        if let Some(sub) = root.find_subcommand_mut(&name) {
            let mut sub = stable(sub.clone()).bin_name(format!("otel-injector {name}"));
            out += &format!("\n```text\n$ otel-injector {name} --help\n{}```\n", sub.render_help());
        }
    }
    out
}

fn parse_default(s: &str) -> Result<DefaultMode, String> {
    match s {
        "inject" => Ok(DefaultMode::Inject),
        "skip" => Ok(DefaultMode::Skip),
        _ => Err("must be inject or skip".to_owned()),
    }
}

fn parse_workload(s: &str) -> Result<WorkloadKind, String> {
    WorkloadKind::ALL.into_iter().find(|w| w.as_str() == s.trim()).ok_or_else(|| format!("unknown workload kind {s:?}"))
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        parse(args.iter().map(Into::into))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults() {
        let Command::Serve(s) = cli(&["otel-injector", "serve", "--dev-certs"]).expect("parses").command else {
            panic!("serve expected");
        };
        assert_eq!(s.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(s.metrics_listen.to_string(), "0.0.0.0:9090");
        assert_eq!(s.read_timeout, Duration::from_secs(10));
        assert!(s.dev_certs);
        assert_eq!(s.config.load().expect("defaults"), Config::default());
    }

    #[test]
    fn tls_flags_go_together_and_exclude_dev_certs() {
        assert!(cli(&["otel-injector", "serve", "--tls-cert", "a"]).is_err());
        assert!(cli(&["otel-injector", "serve", "--tls-cert", "a", "--tls-key", "b", "--dev-certs"]).is_err());
        assert!(cli(&["otel-injector", "serve", "--tls-cert", "a", "--tls-key", "b"]).is_ok());
    }

    #[test]
    fn flags_override_the_config() {
        let Command::Preview(p) = cli(&[
            "otel-injector",
            "preview",
            "-f",
            "x.yaml",
            "--default",
            "inject",
            "--workloads",
            "Pod,CronJob",
            "--endpoint",
            "http://gw:4318",
            "--protocol",
            "http/protobuf",
            "--sampling-ratio",
            "0.5",
            "--sidecar",
            "true",
            "--namespace-annotation",
            "otel-injector.io/inject=true",
        ])
        .expect("parses")
        .command
        else {
            panic!("preview expected");
        };
        let config = p.config.load().expect("valid");
        assert_eq!(config.default, DefaultMode::Inject);
        assert_eq!(config.workloads, [WorkloadKind::Pod, WorkloadKind::CronJob]);
        assert_eq!(config.endpoint, "http://gw:4318");
        assert_eq!(config.protocol, Protocol::HttpProtobuf);
        assert_eq!(config.sampling_ratio, 0.5);
        assert!(config.sidecar.enabled);
        assert_eq!(p.namespace_meta().annotations["otel-injector.io/inject"], "true");
    }

    #[rstest::rstest]
    #[case::endpoint_flag_brings_its_port(&["--endpoint", "http://gw:4318"], Ok(Protocol::HttpProtobuf))]
    #[case::protocol_flag_wins(&["--endpoint", "http://gw:8080", "--protocol", "http/protobuf"], Ok(Protocol::HttpProtobuf))]
    #[case::contradiction(&["--endpoint", "http://gw:4318", "--protocol", "grpc"], Err("config protocol: grpc contradicts"))]
    #[case::protocol_flag_against_the_default_endpoint(&["--protocol", "http/protobuf"], Err("config protocol:"))]
    fn a_flags_endpoint_brings_the_protocol_its_port_says(
        #[case] flags: &[&str],
        #[case] want: Result<Protocol, &str>,
    ) {
        let args: Vec<&str> = ["otel-injector", "preview", "-f", "x"].iter().chain(flags).copied().collect();
        let Command::Preview(p) = cli(&args).expect("parses").command else { panic!("preview expected") };
        match (p.config.load(), want) {
            (Ok(config), Ok(protocol)) => assert_eq!(config.protocol, protocol),
            (Err(e), Err(prefix)) => assert!(e.to_string().starts_with(prefix), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn invalid_overrides_name_the_field() {
        let Command::Preview(p) =
            cli(&["otel-injector", "preview", "-f", "x", "--sampling-ratio", "3"]).expect("parses").command
        else {
            panic!("preview expected");
        };
        assert!(p.config.load().expect_err("invalid").to_string().starts_with("config samplingRatio:"));
        assert!(cli(&["otel-injector", "preview", "-f", "x", "--workloads", "Pod,Foo"]).is_err());
        assert!(cli(&["otel-injector", "preview", "-f", "x", "--default", "maybe"]).is_err());
    }

    #[test]
    fn kubectl_plugin_env_means_env() {
        let parsed = cli(&["/usr/local/bin/kubectl-otel_inject", "env", "-f", "p.yaml", "-c", "app"]).expect("parses");
        let Command::Env(e) = parsed.command else { panic!("env expected") };
        assert_eq!((e.files.as_slice(), e.container.as_deref()), (["p.yaml".to_owned()].as_slice(), Some("app")));
        assert!(cli(&["otel-injector", "env"]).is_err(), "a file or --from-cluster");
        let Command::Env(e) =
            cli(&["otel-injector", "env", "--from-cluster", "pod/web", "-n", "shop"]).expect("parses").command
        else {
            panic!("env expected")
        };
        assert_eq!((e.from_cluster.as_deref(), e.namespace.as_str()), (Some("pod/web"), "shop"));
    }

    #[test]
    fn kubectl_plugin_name_means_preview() {
        let parsed = cli(&["/usr/local/bin/kubectl-otel_inject", "-f", "d.yaml", "-o", "patch"]).expect("parses");
        let Command::Preview(p) = parsed.command else { panic!("preview expected") };
        assert_eq!(p.files, ["d.yaml"]);
        assert_eq!(p.output, OutputFormat::Patch);
    }
}
