//! The `audit` command: pods (and the workloads listed in `workloads`) whose instrumentation does not match what
//! the current config and namespace policy give. Read-only: it lists, it never patches.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use super::{AuditArgs, AuditFormat, load_config};
use crate::cluster::snapshot::{self, Listing};
use crate::engine::audit::{Finding, assess};
use crate::engine::config::Config;
use crate::engine::inject::Target;
use crate::engine::policy::NamespaceMeta;
use crate::engine::syntax::KubeVersion;
use crate::engine::workload::WorkloadKind;

/// One object that needs attention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Its namespace.
    pub namespace: String,
    /// Its kind.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// What is wrong.
    pub finding: Finding,
    /// Why.
    pub detail: String,
}

/// What an audit found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Objects that need attention, in listing order.
    pub rows: Vec<Row>,
    /// Objects looked at.
    pub audited: usize,
    /// Kinds that could not be listed, and why.
    pub skipped: Vec<String>,
}

/// Runs the audit; `Ok(true)` when anything was found (the command then exits 1).
pub fn run(args: &AuditArgs) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = runtime.block_on(collect(args))?;
    let mut out = std::io::stdout().lock();
    match args.output {
        AuditFormat::Table => out.write_all(table(&report.rows).as_bytes())?,
        AuditFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report.rows)?)?,
    }
    for why in &report.skipped {
        eprintln!("skipped: {why}");
    }
    eprintln!("audited {} object(s): {} finding(s)", report.audited, report.rows.len());
    Ok(!report.rows.is_empty())
}

async fn collect(args: &AuditArgs) -> anyhow::Result<Report> {
    let client = snapshot::connect(&args.cluster.source()).await?;
    let mut config = load_config(&client, &args.config, args.config_from_cluster.as_ref()).await?;
    if let Some(own) = &args.webhook_namespace {
        config.exclude(own);
    }
    let version = snapshot::server_version(&client).await?;
    let namespaces = snapshot::namespaces(&client).await?;
    let mut kinds = vec![WorkloadKind::Pod];
    kinds.extend(config.workloads.iter().copied().filter(|k| *k != WorkloadKind::Pod));
    let mut report = Report::default();
    for kind in kinds {
        match snapshot::list(&client, kind, args.namespace.as_deref()).await? {
            Listing::NotServed => {
                let (group, version, _) = kind.api_resource();
                let older = if kind == WorkloadKind::CronJob { " (nor batch/v1beta1)" } else { "" };
                report.skipped.push(format!("{kind}: this API server does not serve {group}/{version}{older}"));
            }
            // Pods are what the audit is for; the workload kinds are extra, for whoever may list them.
            Listing::Forbidden(why) if kind == WorkloadKind::Pod => anyhow::bail!("{why}"),
            Listing::Forbidden(why) => {
                let (_, _, plural) = kind.api_resource();
                report.skipped.push(format!("{kind}: not allowed to list {plural} ({why})"));
            }
            Listing::Items(objects) => {
                for object in objects.iter().filter(|o| !finished(o)) {
                    report.audited += 1;
                    report.rows.extend(judge(object, kind, &namespaces, &config, version));
                }
            }
        }
    }
    Ok(report)
}

/// A pod that has run to completion cannot be instrumented any more; listing it would only be noise.
fn finished(object: &Value) -> bool {
    matches!(object.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

fn judge(
    object: &Value,
    kind: WorkloadKind,
    namespaces: &BTreeMap<String, NamespaceMeta>,
    config: &Config,
    version: KubeVersion,
) -> Option<Row> {
    let field = |key: &str| object.pointer(&format!("/metadata/{key}")).and_then(Value::as_str).unwrap_or_default();
    let namespace = field("namespace");
    let empty = NamespaceMeta::default();
    let ns = namespaces.get(namespace).unwrap_or(&empty);
    let target = Target { server_version: Some(version), ..Target::new(kind, namespace, ns, config) };
    let a = assess(object, &target)?;
    Some(Row {
        namespace: namespace.to_owned(),
        kind: kind.as_str(),
        name: field("name").to_owned(),
        finding: a.finding,
        detail: a.detail,
    })
}

/// The rows as aligned columns under a header (just the header when there are none).
pub fn table(rows: &[Row]) -> String {
    let header = ["NAMESPACE", "KIND", "NAME", "FINDING", "DETAIL"];
    let cells: Vec<[&str; 5]> = std::iter::once(header)
        .chain(rows.iter().map(|r| [r.namespace.as_str(), r.kind, r.name.as_str(), r.finding.as_str(), &r.detail]))
        .collect();
    let width = |i: usize| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..4).map(width).collect();
    let mut out = String::new();
    for c in &cells {
        for (i, w) in widths.iter().enumerate() {
            out += &format!("{:<w$}   ", c[i]);
        }
        out += c[4];
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::DefaultMode;
    use crate::testing::fixtures::{container, pod};

    #[test]
    fn rows_are_aligned_under_a_header() {
        let rows = vec![
            Row {
                namespace: "shop".into(),
                kind: "Pod",
                name: "web-1".into(),
                finding: Finding::NotInstrumented,
                detail: "policy: cluster default (inject)".into(),
            },
            Row {
                namespace: "payments".into(),
                kind: "Deployment",
                name: "api".into(),
                finding: Finding::Drift,
                detail: "settings hash a recorded, b now".into(),
            },
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAMESPACE   KIND         NAME    FINDING            DETAIL"), "{text}");
        assert!(lines[1].starts_with("shop        Pod          web-1   not-instrumented   policy:"), "{text}");
        assert_eq!(table(&[]).lines().count(), 1);
    }

    #[test]
    fn finished_pods_are_not_judged_and_others_are() {
        let mut done = pod("job-1").container(container("c")).build();
        done["status"] = serde_json::json!({"phase": "Succeeded"});
        assert!(finished(&done));
        let mut running = pod("web").container(container("c")).build();
        running["metadata"]["namespace"] = "shop".into();
        assert!(!finished(&running));
        let config = Config { default: DefaultMode::Inject, ..Config::default() };
        let row = judge(&running, WorkloadKind::Pod, &BTreeMap::new(), &config, KubeVersion { major: 1, minor: 20 })
            .expect("a finding");
        assert_eq!((row.namespace.as_str(), row.name.as_str(), row.finding), ("shop", "web", Finding::NotInstrumented));
    }
}
