//! The house (issue 19): the engine stays pure and the modules import each other one way. Read from the sources,
//! so a change that breaks either fails here, not in a review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every source file of the library and binary, with its module path (`engine::inject::env`), test-only code and
/// comment lines cut.
fn modules() -> BTreeMap<String, (PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src").with_extension("");
            let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib" || l == "main") {
                parts.pop();
            }
            let name = parts.join("::");
            // Test modules and everything after a `#[cfg(test)]` are the tests', not the house's.
            if parts.iter().any(|p| p == "tests") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            // Comments (and so intra-doc links) name modules without importing them.
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .flat_map(|line| [line, "\n"])
                .collect();
            out.insert(name, (path, code));
        }
    }
    out
}

/// The modules `code` (of module `me`) refers to: `crate::a::b` and `super::x`, each resolved to the longest known
/// module path.
fn references(me: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let parent: Vec<&str> = me.split("::").filter(|p| !p.is_empty()).collect();
    let mut found = BTreeSet::new();
    for (anchor, base) in [("crate::", Vec::new()), ("super::", parent[..parent.len().saturating_sub(1)].to_vec())] {
        for (at, _) in code.match_indices(anchor) {
            let preceded = code[..at].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_');
            if preceded {
                continue;
            }
            let path: String = code[at + anchor.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut parts: Vec<&str> = base.clone();
            parts.extend(path.split("::").filter(|p| !p.is_empty()));
            while !parts.is_empty() {
                let candidate = parts.join("::");
                if known.contains(&candidate) {
                    found.insert(candidate);
                    break;
                }
                parts.pop();
            }
        }
    }
    found.remove(me);
    found
}

#[test]
fn the_engine_imports_no_io_and_no_other_part_of_the_crate() {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let forbidden = ["std::fs", "std::net", "tokio", "hyper", "axum", "kube", "reqwest", "notify", "rustls"];
    let mut problems = Vec::new();
    for (name, (path, code)) in modules.iter().filter(|(n, _)| n.starts_with("engine")) {
        for word in forbidden {
            let used = code.match_indices(word).any(|(at, _)| {
                let before = code[..at].chars().last();
                let after = code[at + word.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && matches!(after, Some(':' | ';' | '{' | ' '))
            });
            if used {
                problems.push(format!("{}: uses {word}", path.display()));
            }
        }
        for other in references(name, code, &known).iter().filter(|r| !r.starts_with("engine")) {
            problems.push(format!("{}: uses crate::{other}", path.display()));
        }
    }
    assert!(problems.is_empty(), "the engine must stay pure:\n{}", problems.join("\n"));
}

#[test]
fn modules_import_each_other_one_way() {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    // A module and the modules inside it belong together (a parent declares its children; children may use what
    // their parent defines): only edges between modules neither of which contains the other count.
    let within = |a: &str, b: &str| {
        a.is_empty() || b.is_empty() || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
    };
    let graph: BTreeMap<&str, BTreeSet<String>> = modules
        .iter()
        .map(|(name, (_, code))| {
            let edges = references(name, code, &known).into_iter().filter(|to| !within(name, to)).collect();
            (name.as_str(), edges)
        })
        .collect();
    // A circle is a module that reaches itself.
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = graph.get(from).map(|e| e.iter().cloned().collect()).unwrap_or_default();
        while let Some(next) = todo.pop() {
            if seen.insert(next.clone()) {
                todo.extend(graph.get(next.as_str()).into_iter().flatten().cloned());
            }
        }
        seen
    };
    let circles: Vec<String> =
        graph.keys().filter(|m| reaches(m).contains(**m)).map(|m| format!("{m} -> {:?}", graph[m])).collect();
    assert!(circles.is_empty(), "modules that reach themselves through others:\n{}", circles.join("\n"));
}
