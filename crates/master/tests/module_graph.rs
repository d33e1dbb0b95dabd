//! The core's modules import each other in one direction only: no cycles (the master was
//! once a hub every module reached back into). Read from the sources: each top-level module
//! of `src/` and the `crate::` paths its code (tests aside) names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

fn leading_name(text: &str) -> String {
    text.trim_start().chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect()
}

/// The modules `crate::name` paths in `text` name, up to the first test module; a group
/// `crate::{a::X, b}` names each of its members.
fn imports(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            found.insert(leading_name(rest));
            continue;
        };
        // The members at the group's own level: after `{` and after each `,` at depth 0.
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    found.insert(leading_name(&group[start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    found.insert(leading_name(&group[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
    }
    found.remove("");
    found
}

#[test]
fn imports_are_read_from_paths_and_groups() {
    let text =
        "use crate::a::X;\nuse crate::{b::{Y, Z}, c, d::W};\nfn f() { crate::e::g(); }\n#[cfg(test)]\nuse crate::t;";
    let names: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut folders = vec![src.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let Some(module) = module_of(path.strip_prefix(&src).unwrap()) else { continue };
            let text = std::fs::read_to_string(&path).unwrap();
            graph.entry(module.clone()).or_default().extend(imports(&text).into_iter().filter(|m| *m != module));
        }
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|m| known.contains(m));
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last()?;
        for next in &graph[last] {
            if next == start {
                return Some([path.clone(), vec![start.to_string()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push([path.clone(), vec![next.clone()]].concat());
            }
        }
    }
    None
}

#[test]
fn the_core_has_no_import_cycles() {
    let graph = graph();
    assert!(graph.len() > 10, "read the modules: {graph:?}");
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, module) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn services_do_not_reach_into_the_master() {
    let graph = graph();
    for service in [
        "alerts",
        "notify",
        "metrics",
        "scheduler",
        "catalog",
        "watch",
        "cluster_control",
        "clusters",
        "session",
        "store",
    ] {
        assert!(!graph[service].contains("master"), "{service} imports the master: {:?}", graph[service]);
    }
}
