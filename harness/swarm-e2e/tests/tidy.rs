//! The architecture's invariants, checked on the source tree (rust-analyzer's `tidy.rs`
//! is the model): what ARCHITECTURE.md says about the code is true because this test
//! fails when it stops being true. Needs no engine; `scripts/test.sh` runs it with the rest.
//!
//! - no import cycles: at every level of each crate's module tree, the sibling modules
//!   depend on each other without a cycle (a module and its own parent or children are
//!   one unit: `checks/mod.rs` using `checks/probe.rs` is not a cycle, `checks` ->
//!   `targets` -> `netfault` -> `checks::probe` is);
//! - `run/`, `checks/` and the leftovers commands (`cli/resources.rs`: `ls`, `down`,
//!   `env`, `sweep`) name no target implementation, only `targets`' traits and types;
//! - every check kind of the model has a scenario in `fixtures/broken/` that uses it, and
//!   every `.expect` file there reads as the typed `support::Expect` (no unknown key);
//! - no function over 120 lines outside tests, counted from `fn` to its closing brace;
//!   clippy's `too_many_lines` is also denied in every crate at the threshold
//!   `clippy.toml` sets (it counts only code lines; this test keeps the setting);
//! - ARCHITECTURE.md's code map names every module file of every crate, and names none
//!   that does not exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod support;

use support::repo;

/// The crates whose sources are held to the rules, by their `src` folder.
const CRATES: &[&str] = &["harness/model/src", "harness/digitalocean/src", "harness/swarm-e2e/src"];

/// Module path (`checks::probe`) of a source file under a crate's `src`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// A file's code without its unit tests and comments (what tests import is not the
/// module's dependency).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |e| format!("{prefix}{e}")))
        .collect()
}

/// Every path a file's code names that starts with `crate::`, `super::` or `self::`,
/// from `use` trees and from paths written inline.
fn named_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` items start a line (strings that say "use" do not).
    let mut offset = 0;
    for line in code.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let item = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|p| trimmed.strip_prefix(p));
        if let Some(item) = item {
            let start = offset + (line.len() - item.len());
            let end = code[start..].find(';').map_or(code.len(), |e| start + e);
            out.extend(expand(&code[start..end]));
        }
        offset += line.len();
    }
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':') {
                continue;
            }
            let len = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(code.len() - at);
            out.push(code[at..at + len].to_string());
        }
    }
    out
}

/// The module a path resolves to, from inside `module`: its longest prefix that is a
/// module of the crate.
fn resolve(path: &str, module: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut segments = path.split("::").filter(|s| !s.is_empty());
    let mut base: Vec<String> = match segments.next()? {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => {
            // The parent module, whether this one is a `mod.rs` or a file.
            let mut b = module.to_vec();
            b.pop()?;
            b
        }
        _ => return None,
    };
    let mut found = modules.contains(&base).then(|| base.clone());
    for s in segments {
        if s == "super" {
            base.pop()?;
            continue;
        }
        base.push(s.to_string());
        if modules.contains(&base) {
            found = Some(base.clone());
        }
    }
    found
}

/// A module by its path (`["checks", "probe"]`).
type Module = Vec<String>;
/// Each module and the modules it names.
type Edges = BTreeMap<Module, BTreeSet<Module>>;

/// The module graph of one crate: edges from each module to the modules it names.
fn module_graph(src: &Path) -> Edges {
    let files = rust_files(src);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut edges = Edges::new();
    for file in &files {
        let module = module_of(src, file);
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for path in named_paths(&code) {
            if let Some(to) = resolve(&path, &module, &modules)
                && to != module
            {
                edges.entry(module.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// Cycles among siblings: an edge from `a::b::x` to `a::c::y` is an edge `b` -> `c`
/// among the children of `a`; edges to a module's own ancestors or descendants do not
/// count. Returns each cycle found as its path.
fn sibling_cycles(edges: &Edges) -> Vec<String> {
    let mut levels: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, tos) in edges {
        for to in tos {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue;
            }
            levels
                .entry(from[..common].to_vec())
                .or_default()
                .entry(from[common].clone())
                .or_default()
                .insert(to[common].clone());
        }
    }
    let mut cycles = Vec::new();
    for (parent, graph) in &levels {
        for start in graph.keys() {
            // Depth-first from `start`, looking for a way back to it.
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((node, path)) = stack.pop() {
                for next in graph.get(&node).into_iter().flatten() {
                    if next == start {
                        let mut cycle = path.clone();
                        cycle.push(start.clone());
                        let at = if parent.is_empty() {
                            "crate".to_string()
                        } else {
                            parent.join("::")
                        };
                        cycles.push(format!("in {at}: {}", cycle.join(" -> ")));
                    } else if seen.insert(next.clone()) {
                        let mut p = path.clone();
                        p.push(next.clone());
                        stack.push((next.clone(), p));
                    }
                }
            }
        }
    }
    // Each cycle is found once from every module on it: keep the one that starts at its
    // smallest name.
    cycles.sort();
    cycles.dedup();
    cycles
        .into_iter()
        .filter(|c| {
            let names: Vec<&str> = c.split(": ").nth(1).unwrap().split(" -> ").collect();
            names[0] == *names.iter().min().unwrap()
        })
        .collect()
}

#[test]
fn no_module_import_cycles() {
    let mut all = Vec::new();
    for krate in CRATES {
        let edges = module_graph(&repo().join(krate));
        all.extend(sibling_cycles(&edges).into_iter().map(|c| format!("{krate}: {c}")));
    }
    assert!(
        all.is_empty(),
        "import cycles between modules (move what both sides need into a leaf module both import):\n{}",
        all.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle_through_a_child() {
    // The shape of a cycle this test once found: checks -> targets -> netfault -> checks::probe.
    let edge = |a: &str, b: &str| {
        let split = |s: &str| s.split("::").map(str::to_string).collect::<Vec<_>>();
        (split(a), split(b))
    };
    let mut edges = Edges::new();
    for (a, b) in [
        edge("checks", "targets"),
        edge("targets", "netfault"),
        edge("netfault", "checks::probe"),
        edge("checks::probe", "checks"),
        edge("run::checks", "run::phases"),
        edge("run::phases", "wait"),
    ] {
        edges.entry(a).or_default().insert(b);
    }
    assert_eq!(
        sibling_cycles(&edges),
        vec!["in crate: checks -> targets -> netfault -> checks".to_string()]
    );
    assert_eq!(
        expand("crate::{a::{B, c}, d}"),
        vec!["crate::a::B", "crate::a::c", "crate::d"]
    );
}

#[test]
fn run_checks_and_leftovers_name_no_target_implementation() {
    let src = repo().join("harness/swarm-e2e/src");
    let implementations: Vec<String> = std::fs::read_dir(src.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "mod.rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(implementations.len() >= 3, "{implementations:?}");
    let mut offences = Vec::new();
    let mut files = rust_files(&src.join("run"));
    files.extend(rust_files(&src.join("checks")));
    files.push(src.join("cli/resources.rs"));
    for file in files {
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for path in named_paths(&code) {
            let segments: Vec<&str> = path.split("::").collect();
            if let Some(i) = segments.iter().position(|s| *s == "targets")
                && segments
                    .get(i + 1)
                    .is_some_and(|s| implementations.iter().any(|m| m == s))
            {
                offences.push(format!("{}: {path}", file.strip_prefix(&src).unwrap().display()));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "run/, checks/ and cli/resources.rs see only the Target and Leftovers traits and their types \
         (targets/mod.rs):\n{}",
        offences.join("\n")
    );
}

#[test]
fn every_check_kind_has_a_broken_fixture() {
    let mut used = BTreeSet::new();
    for entry in std::fs::read_dir(repo().join("fixtures/broken")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let scenario = swarm_e2e_model::parse_scenario_file(&path)
                .unwrap_or_else(|e| panic!("{} must be a valid scenario: {e}", path.display()));
            // Typed, unknown keys refused: a misspelt key would silently expect nothing.
            let expect = support::Expect::of(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !expect.failures.is_empty() || expect.exit.is_some(),
                "{}.expect names no failure and no exit code",
                path.display()
            );
            // The implicit declared-state check is every scenario's: it proves nothing.
            for check in scenario.checks.iter().filter(|c| c.line.is_some()) {
                used.insert(check.kind.kind_name());
            }
        }
    }
    let missing: Vec<&str> = swarm_e2e_model::CHECK_KINDS
        .iter()
        .map(|k| k.name)
        .filter(|k| !used.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "check kinds with no scenario in fixtures/broken/ (a check that is never seen failing may be unable to): {missing:?}"
    );
}

/// The longest a function may be, in lines from its `fn` to its closing brace (comments
/// and blank lines count: they are read too). Clippy's `too_many_lines` counts only code.
const MAX_FUNCTION_LINES: usize = 120;

/// Each function of `code` (rustfmt's layout: the closing brace at the `fn`'s indent)
/// with its first line number and its length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let item = ["pub ", "pub(crate) ", "pub(super) ", "const ", "async ", "unsafe "]
            .iter()
            .fold(trimmed, |t, p| t.strip_prefix(p).unwrap_or(t));
        let item = ["async ", "unsafe "]
            .iter()
            .fold(item, |t, p| t.strip_prefix(p).unwrap_or(t));
        let Some(rest) = item.strip_prefix("fn ") else { continue };
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let close = format!("{indent}}}");
        // A declaration without a body (a trait's) ends at its `;` before any `{`.
        let body = lines[i..]
            .iter()
            .position(|l| l.trim_end().ends_with('{') || l.trim_end().ends_with(';'));
        if body.is_some_and(|b| lines[i + b].trim_end().ends_with(';')) {
            continue;
        }
        if let Some(end) = lines[i + 1..].iter().position(|l| *l == close) {
            out.push((name, i + 1, end + 2));
        }
    }
    out
}

#[test]
fn no_function_is_over_120_lines() {
    let mut long = Vec::new();
    for krate in CRATES {
        let src = repo().join(krate);
        for file in rust_files(&src) {
            let code = code_of(&std::fs::read_to_string(&file).unwrap());
            for (name, line, len) in functions(&code) {
                if len > MAX_FUNCTION_LINES {
                    let shown = file.strip_prefix(repo()).unwrap().display();
                    long.push(format!("{shown}:{line} {name} ({len} lines)"));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines outside tests (split them by step):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_function_counter_counts_from_fn_to_its_brace() {
    let body = "    let x = 1;\n".repeat(3);
    let code = format!("/// doc\npub(crate) async fn f() {{\n{body}}}\n\ntrait T {{\n    fn g(&self);\n}}\n");
    assert_eq!(functions(&code), vec![("f".to_string(), 2, 5)]);
}

#[test]
fn long_functions_are_refused_by_clippy() {
    let config = std::fs::read_to_string(repo().join("clippy.toml")).expect("clippy.toml at the repository root");
    assert!(
        config
            .lines()
            .any(|l| l.replace(' ', "") == "too-many-lines-threshold=120"),
        "clippy.toml must set too-many-lines-threshold = 120"
    );
    for krate in CRATES {
        let root = ["lib.rs", "main.rs"]
            .iter()
            .map(|f| repo().join(krate).join(f))
            .find(|p| p.exists())
            .unwrap();
        let text = std::fs::read_to_string(&root).unwrap();
        assert!(
            text.contains("#![deny(clippy::too_many_lines)]"),
            "{} must deny clippy::too_many_lines",
            root.display()
        );
    }
}

/// The paths the code map names: backticked paths at the start of its bullets (before the
/// dash), under a `### \`harness/NAME/src\`` heading (relative to that folder).
fn code_map(architecture: &str) -> BTreeMap<String, BTreeSet<String>> {
    let section = architecture
        .split("\n## Code map")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Code map` section");
    let section = section.split("\n## ").next().unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_bullet = false;
    for line in section.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            // Only a heading that is a backticked crate folder opens a list of its files.
            current = h
                .strip_prefix('`')
                .and_then(|h| h.split('`').next())
                .map(str::to_string);
            continue;
        }
        let Some(krate) = &current else { continue };
        // A bullet names its files before its dash, `a.rs`, `b.rs` — possibly over lines.
        let text = match line.strip_prefix("- ") {
            Some(t) => {
                in_bullet = true;
                t
            }
            None if in_bullet && line.starts_with("  ") => line,
            None => {
                in_bullet = false;
                continue;
            }
        };
        if !in_bullet {
            continue;
        }
        let (names, has_dash) = match text.split_once(" — ") {
            Some((names, _)) => (names, true),
            None => (text, false),
        };
        for path in names.split('`').skip(1).step_by(2) {
            out.entry(krate.clone()).or_default().insert(path.to_string());
        }
        if has_dash {
            in_bullet = false;
        }
    }
    out
}

#[test]
fn the_code_map_names_every_module_and_only_those() {
    let architecture = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let map = code_map(&architecture);
    let mut problems = Vec::new();
    for krate in CRATES {
        let src = repo().join(krate);
        let named = map.get(*krate).cloned().unwrap_or_default();
        let files: BTreeSet<String> = rust_files(&src)
            .iter()
            .map(|f| f.strip_prefix(&src).unwrap().to_string_lossy().into_owned())
            .collect();
        for f in files.difference(&named) {
            problems.push(format!("{krate}/{f} is not in the code map"));
        }
        for n in named.difference(&files) {
            problems.push(format!("the code map names {krate}/{n}, which does not exist"));
        }
    }
    for krate in map.keys().filter(|k| !CRATES.contains(&k.as_str())) {
        problems.push(format!(
            "the code map has a heading for `{krate}`, which is no crate's src"
        ));
    }
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md's code map is out of date (a bullet `- \\`PATH\\` — what it is` per file, under \
         `### \\`harness/CRATE/src\\``):\n{}",
        problems.join("\n")
    );
}
