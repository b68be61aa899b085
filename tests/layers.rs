//! The layers of docs/architecture.md: a top-level module of `src/` may use the ones below it,
//! never one above. The back edges the code still has are listed here, each to be removed; the
//! test fails on a new one, and on a listed one that is gone (so the list only shrinks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod checkout;
use checkout::checkout;

/// Bottom first. `lib.rs` and `main.rs` wire everything and stand above them all.
const LAYERS: &[&str] = &[
    "clock",
    "sharded_map",
    "periodic",
    "progress",
    "error",
    "settings",
    "metrics",
    "trace",
    "data",
    "protocol",
    "engine",
    "features",
    "version",
    "inference_log",
    "drift",
    "registry",
    "fleet",
    "endpoint",
    "promotion",
    "demo",
    "pipeline",
    "http",
    "grpc",
    "cli",
];

/// Back edges the code still has (issue 16), with what removes each.
const KNOWN_BACK_EDGES: &[(&str, &str)] = &[];

/// The top-level module of a path under `src/`.
fn top_module(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// `crate::X` uses outside unit tests, as (from, to) edges between top-level modules.
fn edges(src: &Path) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let from = top_module(rel);
            if from == "lib" || from == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may reach anywhere.
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            for (i, _) in code.match_indices("crate::") {
                let to: String = code[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !to.is_empty() && to != from {
                    out.entry((from.clone(), to))
                        .or_insert_with(|| rel.display().to_string());
                }
            }
        }
    }
    out
}

fn rank(module: &str) -> usize {
    LAYERS.iter().position(|m| *m == module).unwrap_or_else(|| {
        panic!("module '{module}' is on no layer: add it to LAYERS and docs/architecture.md")
    })
}

/// The problems of a set of edges: new back edges, and listed ones that are gone.
fn problems(edges: &BTreeMap<(String, String), String>) -> Vec<String> {
    problems_with(edges, KNOWN_BACK_EDGES)
}

fn problems_with(
    edges: &BTreeMap<(String, String), String>,
    listed: &[(&str, &str)],
) -> Vec<String> {
    let known: BTreeSet<(&str, &str)> = listed.iter().copied().collect();
    let mut out = Vec::new();
    for ((from, to), file) in edges {
        if rank(to) > rank(from) && !known.contains(&(from.as_str(), to.as_str())) {
            out.push(format!(
                "{file}: '{from}' uses '{to}', a layer above it (docs/architecture.md)"
            ));
        }
    }
    for (from, to) in &known {
        if !edges.contains_key(&(from.to_string(), to.to_string())) {
            out.push(format!(
                "'{from}' no longer uses '{to}': remove the edge from KNOWN_BACK_EDGES"
            ));
        }
    }
    out
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let src = checkout().join("src");
    let found = problems(&edges(&src));
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn a_planted_back_edge_is_found() {
    let src = checkout().join("src");
    let mut planted = edges(&src);
    planted.insert(
        ("protocol".into(), "http".into()),
        "protocol/planted.rs".into(),
    );
    let found = problems(&planted);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("'protocol' uses 'http'"), "{found:?}");
    // A listed edge is allowed while it exists, and reported once it has gone, so the list
    // only shrinks.
    let listed = [("protocol", "http")];
    assert!(problems_with(&planted, &listed).is_empty());
    planted.remove(&("protocol".into(), "http".into()));
    let found = problems_with(&planted, &listed);
    assert!(
        found
            .iter()
            .any(|p| p.contains("'protocol' no longer uses 'http'")),
        "{found:?}"
    );
}

#[test]
fn the_architecture_page_names_every_layer() {
    let page = std::fs::read_to_string(checkout().join("docs/architecture.md")).unwrap();
    for layer in LAYERS {
        assert!(
            page.contains(&format!("`{layer}`")),
            "docs/architecture.md does not name the layer `{layer}`"
        );
    }
}
