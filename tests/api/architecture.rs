//! The structure the code keeps (issue 20, STYLE.md): no import cycle between the top-level
//! modules of `src/`, nor between the files of one folder. A cycle means two parts can only be
//! understood, tested and changed together; this test names it the moment it appears.
//!
//! Imports are read from the text (`crate::x`, `super::x`, `crate::folder::x`), test modules
//! left out, as the before-stop hook and `farm-studio` read them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The file's code without its `#[cfg(test)]` module (tests may reach anywhere).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// The identifiers that follow each `prefix` in `text` (`crate::store::x` → `store` for
/// `crate::`).
fn names_after<'t>(text: &'t str, prefix: &str) -> Vec<&'t str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `$crate::` or `other_crate::`
        }
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if end > 0 {
            names.push(&rest[..end]);
        }
    }
    names
}

/// A cycle of `graph`, as the path `a -> b -> … -> a`, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Top-level module → the top-level modules its files import.
fn top_level_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for path in rust_files(src) {
        let relative = path.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_str().unwrap();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = code(&path);
        let deps = graph.entry(module.clone()).or_default();
        for name in names_after(&text, "crate::") {
            if name != module {
                deps.insert(name.to_owned());
            }
        }
    }
    graph
}

/// For one folder: file → the sibling files it imports (`mod.rs`, the folder's face, left out).
fn folder_graph(folder: &Path, module: &str) -> Graph {
    let siblings: BTreeSet<String> = std::fs::read_dir(folder)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".rs").filter(|n| *n != "mod").map(str::to_owned)
        })
        .collect();
    let mut graph = Graph::new();
    for file in &siblings {
        let text = code(&folder.join(format!("{file}.rs")));
        let within = format!("crate::{module}::");
        let deps = graph.entry(file.clone()).or_default();
        for name in names_after(&text, "super::").into_iter().chain(names_after(&text, &within)) {
            if name != file && siblings.contains(name) {
                deps.insert(name.to_owned());
            }
        }
    }
    graph
}

#[test]
fn top_level_modules_import_each_other_in_one_direction() {
    let graph = top_level_graph(&src());
    assert!(graph.contains_key("store") && graph["http"].contains("store"), "the scan reads imports: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle between top-level modules of src/: {}", cycle.join(" -> "));
    }
}

#[test]
fn files_of_one_folder_import_each_other_in_one_direction() {
    let src = src();
    for entry in std::fs::read_dir(&src).unwrap() {
        let folder = entry.unwrap().path();
        if folder.is_dir() {
            let module = folder.file_name().unwrap().to_str().unwrap().to_owned();
            if let Some(cycle) = find_cycle(&folder_graph(&folder, &module)) {
                panic!("import cycle between the files of src/{module}/: {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry((*a).to_owned()).or_default().insert((*b).to_owned());
        }
        g
    };
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap(), ["a", "b", "c", "a"]);
    // `$crate::` in a macro names this crate too; `my_crate::` does not.
    assert_eq!(names_after("use crate::store::{Tx}; $crate::x; my_crate::y", "crate::"), ["store", "x"]);
}

/// Routes are added only through utoipa-axum's `routes!`, which takes the path and method from
/// the handler's `#[utoipa::path]`: a route added with axum's own `.route(…)` would be served
/// without being in `/openapi.json` (`docs::every_documented_route_is_served_…` checks the rest).
#[test]
fn every_route_is_registered_with_its_openapi_operation() {
    let files = rust_files(&src().join("http"));
    assert!(files.len() > 10, "the scan reads src/http");
    for file in files {
        let text = code(&file);
        for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
            assert!(
                !text.contains(call),
                "{}: `{call}` adds a route the OpenAPI document does not know",
                file.display()
            );
        }
    }
}
