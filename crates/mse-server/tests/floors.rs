//! The crate's floors (see `src/lib.rs` and `docs/architecture.md`): every
//! module imports only from its own floor or the floors below, the modules
//! of one floor import each other without a circle, and the rules at the
//! bottom touch no database, socket, file or clock. Read from the sources,
//! so a new upward import fails here, naming the file and the line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floor of each top-level module, lowest first; the crate root and
/// `main` are above them all.
const FLOORS: &[(&str, u8)] = &[
    ("domain", 0),
    ("store", 1),
    ("data", 1),
    ("state", 2),
    ("api", 3),
    ("roles", 4),
];
const ROOT_FLOOR: u8 = 5;

/// What the rules on the lowest floor never name.
const IO_IN_DOMAIN: &[&str] = &[
    "sqlx",
    "axum",
    "tokio",
    "reqwest",
    "hyper",
    "std::fs",
    "std::net::Tcp",
    "Utc::now",
    "SystemTime::now",
    "Instant::now",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path below the crate root: `["api", "apps"]` for
/// `src/api/apps.rs`, `["api"]` for `src/api/mod.rs`, `[]` for `lib.rs`.
fn module_of(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn floor_of(module: &[String]) -> u8 {
    module.first().map_or(ROOT_FLOOR, |top| {
        FLOORS
            .iter()
            .find(|(name, _)| name == top)
            .map(|(_, floor)| *floor)
            .unwrap_or_else(|| panic!("module `{top}` has no floor: add it to FLOORS"))
    })
}

/// The lines of a file that are code outside its test module, numbered.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(|(_, line)| line.trim() != "#[cfg(test)]")
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .map(|(n, line)| (n + 1, line))
        .collect()
}

/// The paths a line names through `crate::` (each as its first two
/// segments), `use crate::{a, b::c}` groups included.
fn crate_paths(line: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            found.extend(inner.split(',').map(|item| segments(item.trim())));
        } else {
            found.push(segments(after));
        }
        rest = after;
    }
    found.retain(|path| !path.is_empty());
    found
}

/// The first two segments of a path (`state::ApiError` of
/// `state::ApiError::new(…)`), each an identifier.
fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .take(2)
        .map(identifier)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The identifier `text` starts with.
fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every file with its module and code lines.
fn sources() -> Vec<(PathBuf, Vec<String>, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            (file.clone(), module_of(&file), text)
        })
        .collect()
}

/// The module a `crate::` path leads to, as far as the floors care: the
/// top-level module and, below it, the second level when it is a module
/// (a file or folder of `src`), else the top-level module itself.
fn target_module(path: &[String]) -> Vec<String> {
    let top = &path[0];
    let is_module = |parts: &[&str]| {
        let mut dir = src();
        for part in parts {
            dir = dir.join(part);
        }
        dir.with_extension("rs").is_file() || dir.join("mod.rs").is_file()
    };
    if !is_module(&[top]) {
        return Vec::new();
    }
    match path.get(1) {
        Some(second) if is_module(&[top, second]) => vec![top.clone(), second.clone()],
        _ => vec![top.clone()],
    }
}

#[test]
fn no_module_imports_from_a_floor_above_its_own() {
    let mut upward = Vec::new();
    for (file, module, text) in sources() {
        let floor = floor_of(&module);
        for (n, line) in code_lines(&text) {
            for path in crate_paths(line) {
                let target = target_module(&path);
                let to = floor_of(&target);
                if to > floor {
                    upward.push(format!(
                        "{}:{n}: floor {floor} imports `crate::{}` of floor {to}",
                        file.strip_prefix(src()).unwrap().display(),
                        path.join("::")
                    ));
                }
            }
            if line.contains("super::") && module.len() == 1 {
                upward.push(format!(
                    "{}:{n}: `super::` from a top-level module reaches the crate root",
                    file.strip_prefix(src()).unwrap().display()
                ));
            }
        }
    }
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn the_modules_of_one_floor_import_each_other_without_a_circle() {
    // Edges between second-level modules (`api::apps` → `api::tenancy`),
    // and between top-level modules of one floor (`data` → `store`).
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, module, text) in sources() {
        if module.is_empty() {
            continue;
        }
        let from = module
            .iter()
            .take(2)
            .cloned()
            .collect::<Vec<_>>()
            .join("::");
        for (_, line) in code_lines(&text) {
            let mut targets: Vec<Vec<String>> =
                crate_paths(line).iter().map(|p| target_module(p)).collect();
            for item in line
                .split("super::")
                .skip(1)
                .map(identifier)
                .filter(|s| !s.is_empty())
            {
                if module.len() >= 2 {
                    let parent = &module[..module.len() - 1];
                    let mut path = parent.to_vec();
                    path.push(item);
                    targets.push(target_module(&path));
                }
            }
            for target in targets.into_iter().filter(|t| !t.is_empty()) {
                if floor_of(&target) != floor_of(&module) {
                    continue;
                }
                let to = target.join("::");
                let from_top = &module[0];
                let same_top = &target[0] == from_top;
                // A module and its own submodules, or a file and its parent
                // folder's module: one unit.
                let to = if same_top && (target.len() == 1 || module.len() == 1) {
                    continue;
                } else {
                    to
                };
                if to != from {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    // Depth-first search for a circle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        let circle = visit(node, &edges, &mut Vec::new(), &mut done);
        assert!(
            circle.is_none(),
            "an import circle within a floor: {}",
            circle.unwrap_or_default().join(" → ")
        );
    }
}

#[test]
fn handlers_never_import_the_router_that_routes_to_them() {
    let mut found = Vec::new();
    for (file, module, text) in sources() {
        if module.len() < 2 || module[0] != "api" {
            continue;
        }
        for (n, line) in code_lines(&text) {
            let mut paths: Vec<Vec<String>> = crate_paths(line);
            for rest in line.split("super::").skip(1) {
                paths.push(vec!["api".to_string(), identifier(rest)]);
            }
            for path in paths.iter().filter(|p| p[0] == "api") {
                if target_module(path).len() < 2 {
                    found.push(format!(
                        "{}:{n}: names `api::{}`, an item of the router",
                        file.strip_prefix(src()).unwrap().display(),
                        path.get(1).map_or("", String::as_str)
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_rules_touch_no_database_socket_file_or_clock() {
    let mut found = Vec::new();
    for (file, module, text) in sources() {
        if module.first().map(String::as_str) != Some("domain") {
            continue;
        }
        for (n, line) in code_lines(&text) {
            for io in IO_IN_DOMAIN {
                if line.contains(io) {
                    found.push(format!(
                        "{}:{n}: names `{io}`",
                        file.strip_prefix(src()).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "I/O in the domain:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_import_and_a_group() {
    assert_eq!(
        crate_paths("use crate::{state::ApiError, domain::app::App};"),
        [vec!["state", "ApiError"], vec!["domain", "app"]]
    );
    assert_eq!(
        target_module(&["api".into(), "apps".into()]),
        ["api", "apps"]
    );
    assert_eq!(
        floor_of(&target_module(&["roles".into(), "runner".into()])),
        4
    );
    assert_eq!(floor_of(&module_of(&src().join("domain/quota.rs"))), 0);
}
