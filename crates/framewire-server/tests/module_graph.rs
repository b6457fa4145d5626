//! The server crate's modules form no cycle: settings are plain data (`config`), the builder
//! builds the server (`builder` -> `server`, never back), and a connection sees its server
//! through a narrow view (`connection` -> `handle`, and `handle` -> `config` only).
//!
//! Reads `src/` and follows `crate::module` paths in code (comments, doc links and the unit
//! test modules are left out): a new dependency that closes a cycle fails here, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module -> the crate modules its code names.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.to_path_buf()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("src/ is readable") {
                files.push(entry.expect("src/ is readable").path());
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(src).expect("found under src/");
        let module = rel.iter().next().expect("a file name").to_string_lossy();
        let module = module.trim_end_matches(".rs").to_string();
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a source file is readable");
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        let deps = graph.entry(module.clone()).or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let rest = rest.trim_start_matches('{');
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    deps.insert(name);
                }
            }
        }
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// One cycle through `start`, if there is one (depth-first search).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let here = path.last().expect("starts with `start`").clone();
        for next in &graph[&here] {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn server_modules_have_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    // The reader sees the modules it expects: a broken reader finds no cycle by finding nothing.
    assert!(graph["server"].contains("connection"), "{graph:#?}");
    assert!(graph["connection"].contains("handle"), "{graph:#?}");
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
}

#[test]
fn settings_and_the_connection_view_depend_on_no_runtime_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    for runtime in [
        "server",
        "builder",
        "connection",
        "handle",
        "listen",
        "incoming",
    ] {
        assert!(
            !graph["config"].contains(runtime),
            "config (plain data) uses {runtime}"
        );
    }
    for wide in ["server", "builder", "config"] {
        assert!(
            !graph["connection"].contains(wide),
            "connection reaches {wide}"
        );
    }
}
