//! Rendering the webhook's variants: the plain one (`make certs` into a copy of `certs/`) and cert-manager's.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{repo, run};

/// A copy of the repository's `certs/` variant beside a link to `manifests/`, with a pair written by
/// `scripts/certs.sh` (what `make certs` runs) using the built binary.
pub struct PlainVariant {
    pub dir: tempfile::TempDir,
}

impl PlainVariant {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(repo().join("manifests"), dir.path().join("manifests")).expect("link manifests");
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).expect("certs dir");
        std::fs::copy(repo().join("certs/kustomization.yaml"), certs.join("kustomization.yaml")).expect("copy");
        let mut cmd = Command::new(repo().join("scripts/certs.sh"));
        cmd.arg(&certs).env("OTEL_INJECTOR_BIN", env!("CARGO_BIN_EXE_otel-injector"));
        run(cmd);
        Self { dir }
    }

    /// The variant's directory (`certs/`).
    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }
}

/// `kubectl kustomize dir`.
pub fn kustomize(dir: &Path) -> String {
    let mut cmd = Command::new("kubectl");
    cmd.arg("kustomize").arg(dir);
    run(cmd)
}
