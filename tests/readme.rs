//! The README and its docs: the CLI reference of docs/cli.md is generated from clap (`make readme`, UPDATE_README=1,
//! rewrites it), the quick tour runs as written on a fresh copy of the repository, and every link between them leads
//! to a file that exists.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START: &str = "<!-- cli-reference:start -->\n";
const END: &str = "<!-- cli-reference:end -->";
const BIN: &str = env!("CARGO_BIN_EXE_otel-injector");

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md")
}

#[test]
fn cli_reference_in_the_docs_matches_clap() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    let readme = std::fs::read_to_string(&path).expect("docs/cli.md");
    let (head, rest) = readme.split_once(START).expect("docs/cli.md has the cli-reference start marker");
    let (current, tail) = rest.split_once(END).expect("docs/cli.md has the cli-reference end marker");
    let generated = otel_injector::cli::reference_markdown();
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&path, format!("{head}{START}{generated}{END}{tail}")).expect("write docs/cli.md");
        return;
    }
    assert!(current == generated, "docs/cli.md's CLI reference is stale: run `make readme`");
}

/// A shell block of the quick tour, and whether it runs in the background (a server).
#[derive(Debug)]
struct Block {
    background: bool,
    script: String,
}

/// The `sh` blocks of the "Quick tour" section; every one must carry a `<!-- tour -->` marker, so nothing in the
/// tour escapes this test.
fn tour_blocks(readme: &str) -> Vec<Block> {
    let section = readme.split_once("## Quick tour\n").expect("a Quick tour section").1;
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut blocks = Vec::new();
    let mut marker = None;
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if let Some(m) = line.strip_prefix("<!-- tour") {
            marker = Some(m.contains("background"));
        } else if line == "```sh" {
            let background = marker.take().expect("every sh block in the tour is marked <!-- tour -->");
            let script: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push(Block { background, script: script.join("\n") });
        }
    }
    blocks
}

/// The files of a fresh clone: tracked, and new ones not ignored.
fn copy_repository(to: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output()
        .expect("git runs");
    assert!(out.status.success());
    for file in String::from_utf8_lossy(&out.stdout).lines() {
        let (from, dest) = (root.join(file), to.join(file));
        if from.is_file() {
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&from, &dest).expect("copy");
        }
    }
}

/// `cargo run [flags] -- ARGS` runs the binary under test; `cargo build` has nothing left to do.
fn cargo_shim(dir: &Path) -> PathBuf {
    let shim = dir.join("cargo");
    let script = format!(
        "#!/usr/bin/env bash\n\
         case $1 in\n\
           run) while [ $# -gt 0 ] && [ \"$1\" != -- ]; do shift; done; shift; exec {BIN} \"$@\";;\n\
           build) exit 0;;\n\
           *) echo \"cargo shim: unexpected cargo $*\" >&2; exit 1;;\n\
         esac\n"
    );
    std::fs::write(&shim, script).expect("write shim");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    shim
}

fn shell(dir: &Path, shims: &Path, script: &str) -> Command {
    let path = format!("{}:{}", shims.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(dir)
        .env("PATH", path)
        // cargo test sets CARGO to itself; the Makefile would use it.
        .env("CARGO", shims.join("cargo"))
        .env("OTEL_INJECTOR_BIN", BIN)
        .env_remove("KUBECONFIG")
        .env_remove("OTEL_INJECTOR_KUBECONFIG");
    cmd
}

/// Stops what the tour started, whatever happens to the test.
struct Cleanup {
    dir: PathBuf,
    server: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // `make run` is a process group of make and the binary.
            let _ = Command::new("kill").arg("--").arg(format!("-{}", server.id())).status();
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = Command::new(self.dir.join("scripts/dev-cluster.sh"))
            .arg("down")
            .arg(self.dir.join(".dev-cluster"))
            .output();
    }
}

#[test]
fn quick_tour_runs_as_written_on_a_fresh_copy() {
    let blocks = tour_blocks(&readme());
    assert!(blocks.len() >= 4 && blocks[0].background, "{blocks:?}");
    let clone = tempfile::tempdir().expect("tempdir");
    copy_repository(clone.path());
    let shims = tempfile::tempdir().expect("tempdir");
    cargo_shim(shims.path());
    let mut cleanup = Cleanup { dir: clone.path().to_owned(), server: None };
    for block in &blocks {
        if block.background {
            use std::os::unix::process::CommandExt;
            let child = shell(clone.path(), shims.path(), &block.script)
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starts");
            cleanup.server = Some(child);
            let ready = Instant::now();
            while Command::new("curl")
                .args(["-sf", "http://127.0.0.1:9090/readyz"])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                assert!(ready.elapsed() < Duration::from_secs(30), "`{}` never became ready", block.script);
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        let out = shell(clone.path(), shims.path(), &block.script).output().expect("bash runs");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "tour block failed:\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            block.script
        );
        eprintln!("$ {}\n{stdout}", block.script);
        if block.script.contains("audit") {
            assert!(stdout.contains("drift"), "audit lists the pod instrumented before the ratio changed: {stdout}");
            assert!(stdout.contains("audit found drift (exit 1)"), "{stdout}");
        }
        if block.script.contains("--from-cluster") {
            assert!(stdout.contains(r#"{"name":"OTEL_TRACES_SAMPLER_ARG","value":"0.1"}"#), "{stdout}");
        }
    }
    drop(cleanup);
}

#[test]
fn the_readme_stays_a_front_page_and_every_link_to_the_docs_leads_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = readme();
    assert!(readme.lines().count() <= 300, "the README is a front page: {} lines", readme.lines().count());
    let mut files = vec![(root.join("README.md"), readme)];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        files.push((path, text));
    }
    for (path, text) in &files {
        for link in text.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            if link.starts_with("http") || link.starts_with('#') {
                continue;
            }
            let target = path.parent().expect("dir").join(link.split('#').next().unwrap_or(link));
            assert!(target.exists(), "{}: the link {link} leads nowhere", path.display());
        }
    }
}
