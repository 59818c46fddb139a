//! The real `otel-injector serve` as a process, with JSON logs, on ports of its own choosing, and no cluster unless
//! one is given.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_otel-injector");

/// A running `serve`.
pub struct Serve {
    child: Option<Child>,
    /// The TLS webhook address.
    pub webhook: SocketAddr,
    /// The plain health and metrics address.
    pub metrics: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    /// Its own HOME (no `~/.kube/config` there).
    _home: tempfile::TempDir,
}

impl Serve {
    /// Starts `serve` with `args` (listen addresses and JSON logs are added) and waits until it serves.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(args, &[])
    }

    /// [`Serve::start`] with extra environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let home = tempfile::tempdir().expect("tempdir");
        let mut command = Command::new(BIN);
        // The developer's own OpenTelemetry settings stay out of the test.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")) {
            command.env_remove(key);
        }
        command
            .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(args)
            .env("HOME", home.path())
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("otel-injector serve starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addrs, serving) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn({
            let logs = logs.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["message"] == "serving"
                    {
                        let addr = |k: &str| v[k].as_str().and_then(|a| a.parse().ok());
                        let _ = addrs.send((addr("webhook_addr"), addr("metrics_addr")));
                    }
                    logs.lock().expect("logs").push(line);
                }
            }
        });
        let found = serving.recv_timeout(Duration::from_secs(20));
        let Ok((Some(webhook), Some(metrics))) = found else {
            let _ = child.kill();
            panic!("serve did not start: {}", logs.lock().expect("logs").join("\n"));
        };
        Self { child: Some(child), webhook, metrics, logs, _home: home }
    }

    /// `https://127.0.0.1:<port>/mutate`.
    pub fn url(&self) -> String {
        format!("https://{}/mutate", self.webhook)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// GET on the plain port: status and body (0 when there was no answer).
    pub fn get(&self, path: &str) -> (u16, String) {
        super::curl_get(&format!("http://{}{path}", self.metrics))
    }

    /// The value of the metric line starting with `series` (name and labels), if exported.
    pub fn metric(&self, series: &str) -> Option<f64> {
        super::metric_in(&self.get("/metrics").1, series)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
    }

    /// Waits for the process to exit, at most `within`; its exit status, or `None` if it is still running.
    pub fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if started.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A line of `/proc/<pid>/status` (e.g. `VmHWM`), in kB.
    pub fn memory_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A certificate pair for 127.0.0.1 and localhost written to `dir` (`ca.crt`, `tls.crt`, `tls.key`).
pub fn pair_in(dir: &Path) -> otel_injector::webhook::certs::Issued {
    let issued = otel_injector::webhook::certs::issue(&["127.0.0.1".to_owned(), "localhost".to_owned()], 2)
        .expect("certificates");
    otel_injector::webhook::certs::write(&issued, dir).expect("written");
    issued
}

/// Lays `files` out in `dir` the way a Kubernetes Secret or ConfigMap volume does (`name` → `..data/name`,
/// `..data` → `..<version>`), swapping `..data` atomically when the volume already exists.
pub fn volume(dir: &Path, version: &str, files: &[(&str, &[u8])]) -> Vec<PathBuf> {
    let target = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&target).expect("mkdir");
    for (name, content) in files {
        std::fs::write(target.join(name), content).expect("write");
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("atomic swap");
    files
        .iter()
        .map(|(name, _)| {
            let link = dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("symlink");
            }
            link
        })
        .collect()
}
