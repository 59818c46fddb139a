//! Language agents at run time, without a kubelet (issue 22): a pod asking for an agent is admitted through the
//! current control plane; the agent is laid out exactly as its image presents it (`scripts/agents.sh`, from Maven
//! Central, npm and PyPI) and a mount namespace puts it at the path the pod mounts it on; an application with no
//! OpenTelemetry code of its own (the JDK's `HttpServer`, Node's `http`, a Flask app) starts with exactly the
//! environment the kubelet would give it (`engine::kubelet_env`). One HTTP request must reach the collector as an
//! automatically instrumented server span carrying the pod's `service.name` and `k8s.*` attributes. The start-up
//! time and peak memory with and without the agent are printed (`--nocapture`) for the README.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use otel_injector::engine::config::Language;
use otel_injector::engine::kubelet_env;
use otel_injector::testing::sdk_sink::{Export, SdkSink, Signal, Transport};
use serde_json::{Value, json};

use super::harness::{Cluster, Webhook, eventually};

/// Makes a private root holding the host's directories, and in it each `SRC=DST` (read-only, or `SRC=DST=rw`) given
/// before `--`, then runs the rest there with the environment as given, as user `$1` (`-`: as is). The pod's view
/// of the agent: its image at the root for the init container, its volume at the mount path for the application.
const IN_POD_ROOT: &str = r#"
set -e
user=$1; shift
root=/mnt
chroot=$(PATH="$PATH:/usr/sbin:/sbin" command -v chroot)
mount -t tmpfs otel-agent-root "$root"
for d in /*; do
  name=${d#/}
  [ "$name" = mnt ] && continue
  if [ -L "$d" ]; then ln -s "$(readlink "$d")" "$root/$name"
  elif [ -d "$d" ]; then mkdir "$root/$name"; mount --rbind "$d" "$root/$name"; fi
done
while [ "$1" != "--" ]; do
  src=${1%%=*}; rest=${1#*=}; dst=${rest%%=*}; mode=${rest#"$dst"}; shift
  if [ -d "$src" ]; then mkdir -p "$root$dst"; else mkdir -p "$(dirname "$root$dst")"; touch "$root$dst"; fi
  mount --bind "$src" "$root$dst"
  [ "$mode" = "=rw" ] || mount -o remount,bind,ro "$root$dst"
done
shift
# The container's own root filesystem is read-only (`readOnlyRootFilesystem`): only its volumes take writes.
mount -o remount,ro "$root"
if [ "$user" = - ]; then exec "$chroot" "$root" "$@"; else exec "$chroot" --userspec="$user" "$root" "$@"; fi
"#;

/// One language's application and where its agent exports.
struct Case {
    language: &'static str,
    /// The gateway's loopback address for this language (the other e2e receivers hold theirs).
    gateway: &'static str,
    /// How the agent exports there.
    transport: Transport,
}

const CASES: [Case; 3] = [
    Case { language: "java", gateway: "127.0.0.21", transport: Transport::Grpc },
    Case { language: "nodejs", gateway: "127.0.0.22", transport: Transport::Grpc },
    Case { language: "python", gateway: "127.0.0.23", transport: Transport::Http },
];

fn agent_dir(language: &str) -> PathBuf {
    let out = Command::new("scripts/agents.sh").arg(language).output().expect("scripts/agents.sh runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The application's command line, started on `port`.
fn app_command(language: &str, dir: &Path, port: u16) -> Vec<String> {
    let port = port.to_string();
    let app = dir.join("app");
    let text = |p: PathBuf| p.to_string_lossy().into_owned();
    match language {
        "java" => vec!["java".into(), "-cp".into(), text(app), "App".into(), port],
        "nodejs" => vec!["node".into(), text(app.join("app.js")), port],
        _ => vec![text(app.join("venv/bin/python")), text(app.join("app.py")), port],
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A started application: its process, how long until it answered, its peak memory.
struct Started {
    child: Child,
    ready: Duration,
}

impl Started {
    /// Starts `command` with `env` (nothing else but PATH), in the pod's root with the agent's volume mounted when
    /// `agent` is given, and waits until it answers HTTP on `port`.
    fn start(command: &[String], env: &[(String, String)], agent: Option<(&Path, &str)>, port: u16) -> Self {
        let mut cmd = match agent {
            Some((volume, at)) => {
                let mut cmd = in_pod_root("-", &[format!("{}={at}", volume.display())]);
                cmd.arg("--").args(command);
                cmd
            }
            None => {
                let mut cmd = Command::new(&command[0]);
                cmd.args(&command[1..]);
                cmd
            }
        };
        cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let begun = Instant::now();
        let mut child = cmd.spawn().expect("the application starts");
        let answered = eventually(Duration::from_secs(120), || {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
                panic!("the application exited ({status}): {err}");
            }
            get(port).then_some(())
        });
        assert!(answered.is_some(), "the application never answered on {port}");
        Self { child, ready: begun.elapsed() }
    }

    /// Peak resident memory so far, in MiB.
    fn peak_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().strip_suffix(" kB"));
        kib.and_then(|k| k.trim().parse::<f64>().ok()).unwrap_or_default() / 1024.0
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `unshare` running [`IN_POD_ROOT`] as `user` with these mounts (the command follows a `--`).
fn in_pod_root(user: &str, mounts: &[String]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", IN_POD_ROOT, "sh", user]);
    cmd.args(mounts);
    cmd
}

/// Runs the init container as the pod spec has it: its image at the root, the `emptyDir` at its mount, as its user,
/// with a read-only root filesystem; `empty_dir` then holds what the application's mount will show.
fn run_init_container(init: &Value, image: &Path, empty_dir: &Path) {
    let user = init["securityContext"]["runAsUser"].as_u64().expect("runAsUser");
    assert_eq!(init["securityContext"]["readOnlyRootFilesystem"], true);
    let at = init["volumeMounts"][0]["mountPath"].as_str().expect("a mount");
    let mut mounts: Vec<String> = std::fs::read_dir(image)
        .expect("the image's root")
        .map(|e| e.expect("entry").path())
        .map(|p| format!("{}=/{}", p.display(), p.file_name().expect("named").to_string_lossy()))
        .collect();
    mounts.push(format!("{}={at}=rw", empty_dir.display()));
    let command: Vec<&str> = init["command"].as_array().expect("command").iter().filter_map(Value::as_str).collect();
    let out = in_pod_root(&format!("{user}:{user}"), &mounts)
        .arg("--")
        .args(&command)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .expect("the init container runs");
    assert!(out.status.success(), "the init container failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// One GET / to the application; whether it answered `ok`.
fn get(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if std::io::Write::write_all(&mut stream, request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.ends_with("ok")
}

fn server_span(exports: &[Export]) -> Option<&Export> {
    exports.iter().find(|e| e.signal == Signal::Traces && e.spans.iter().any(|(_, kind)| *kind == 2))
}

/// Each language (a JDK `HttpServer`, a Node `http` server, a Flask app), by each delivery.
#[rstest::rstest]
#[case::java_by_image_volume(&CASES[0], "image-volume")]
#[case::java_by_init_container(&CASES[0], "init-container")]
#[case::nodejs_by_image_volume(&CASES[1], "image-volume")]
#[case::nodejs_by_init_container(&CASES[1], "init-container")]
#[case::python_by_image_volume(&CASES[2], "image-volume")]
#[case::python_by_init_container(&CASES[2], "init-container")]
fn the_agent_instruments_an_application_without_otel_code(#[case] case: &Case, #[case] delivery: &str) {
    let _turn = super::harness::HEAVY.blocking_lock();
    let language = Language::named(case.language).expect("a language");
    let dir = agent_dir(case.language);
    let (grpc, http) = (format!("{}:4317", case.gateway), format!("{}:4318", case.gateway));
    let (sink, _) = SdkSink::start(&[(&grpc, Transport::Grpc), (&http, Transport::Http)]);
    let cluster = Cluster::shared();
    let hook = Webhook::start(cluster, &format!("endpoint: http://{grpc}\nagents: {{delivery: {delivery}}}\n"));
    let ns = hook.namespace(&[]);
    let name = format!("shop-{}", case.language);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name,
            "annotations": {(language.key): "true"}},
        "spec": {"containers": [{"name": "app", "image": "shop/app:1.0"}]}});
    cluster.create(&ns, &pod);
    let stored: Value = eventually(Duration::from_secs(30), || {
        let stored = cluster.get(&["pod", &name, "-n", &ns]);
        stored["spec"]["nodeName"].is_string().then_some(stored)
    })
    .expect("scheduled");
    let mounts = stored["spec"]["containers"][0]["volumeMounts"].as_array().cloned().unwrap_or_default();
    let mount = mounts.iter().find(|m| m["name"] == language.volume).expect("the agent is mounted");
    assert_eq!(mount["mountPath"], language.mount_path);
    let env = kubelet_env::resolve(&stored, "app", &|_| None).expect("resolves");
    let vars: Vec<(String, String)> = env.texts().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let command = app_command(case.language, &dir, free_port());
    let port: u16 = command.last().and_then(|p| p.parse().ok()).expect("port");

    // Without the agent (the same environment but the activation, which names files only the mount has): the
    // baseline.
    let without: Vec<(String, String)> = vars.iter().filter(|(k, _)| k != language.var).cloned().collect();
    let plain = Started::start(&command, &without, None, port);
    let (plain_ready, plain_mib) = (plain.ready, plain.peak_mib());
    drop(plain);
    sink.clear();

    // What the application's mount shows: the image itself (an image volume), or the emptyDir once the init
    // container has copied into it.
    let image = dir.join("image");
    let empty_dir = tempfile::tempdir().expect("tempdir");
    let mut copy = String::new();
    let volume = match delivery {
        "image-volume" => {
            let volume =
                stored["spec"]["volumes"].as_array().into_iter().flatten().find(|v| v["name"] == language.volume);
            assert!(volume.is_some_and(|v| v["image"]["reference"].is_string()), "{}", stored["spec"]);
            image.clone()
        }
        _ => {
            let inits = stored["spec"]["initContainers"].as_array().cloned().unwrap_or_default();
            let init = inits.iter().find(|c| c["name"] == language.volume).expect("the init container");
            // The kubelet makes an emptyDir writable by anyone.
            std::fs::set_permissions(empty_dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .expect("chmod");
            let begun = Instant::now();
            run_init_container(init, &image, empty_dir.path());
            let copied = Command::new("du").arg("-sm").arg(empty_dir.path()).output().expect("du");
            let mib = String::from_utf8_lossy(&copied.stdout).split_whitespace().next().unwrap_or("?").to_owned();
            copy = format!("; the init container copied {mib} MiB in {:.2} s", begun.elapsed().as_secs_f64());
            empty_dir.path().to_owned()
        }
    };
    let app = Started::start(&command, &vars, Some((&volume, language.mount_path)), port);
    assert!(get(port), "the application answers");
    let exports = sink.wait_until(Duration::from_secs(60), |e| server_span(e).is_some());
    let (ready, mib) = (app.ready, app.peak_mib());
    let export = server_span(&exports).unwrap_or_else(|| {
        panic!("{}: no server span arrived: {exports:?}\n{vars:?}", case.language);
    });
    assert_eq!(export.at, if case.transport == Transport::Grpc { grpc.clone() } else { http.clone() });
    assert_eq!(export.transport, case.transport, "{}", case.language);
    let resource = &export.resource;
    assert_eq!(resource.get("service.name"), Some(&name), "{resource:?}");
    assert_eq!(resource.get("k8s.namespace.name"), Some(&ns));
    assert_eq!(resource.get("k8s.pod.name"), Some(&name));
    assert_eq!(resource.get("k8s.pod.uid").map(String::as_str), stored["metadata"]["uid"].as_str());
    assert_eq!(resource.get("k8s.node.name").map(String::as_str), stored["spec"]["nodeName"].as_str());
    assert_eq!(resource.get("k8s.container.name").map(String::as_str), Some("app"));
    let span = export.spans.iter().find(|(_, kind)| *kind == 2).map(|(n, _)| n.clone()).unwrap_or_default();
    println!(
        "agent {} ({delivery}): server span {span:?} via {:?} at {}; ready in {:.2} s (without the agent {:.2} s), \
         peak RSS {mib:.0} MiB (without {plain_mib:.0} MiB){copy}",
        case.language,
        export.transport,
        export.at,
        ready.as_secs_f64(),
        plain_ready.as_secs_f64()
    );
}
