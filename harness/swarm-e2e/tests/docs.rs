//! The docs cannot drift from the code: every TOML snippet in README.md and the book
//! (`docs/src/`) is validated by the scenario model, and the scenario reference's table
//! of check kinds is the model's `CHECK_KINDS`. Needs no engine.
//!
//! A ```` ```toml ```` block is a scenario, or a fragment of one: a fragment without
//! `name` gets one, and one without `[[nodes]]` gets the seed's three nodes, so a
//! `[digitalocean]` table alone is checked too. A ```` ```toml hosts ```` block is an
//! `engines` hosts file (TOML only: it names no scenario keys).

use std::path::PathBuf;

use swarm_e2e_model::{CHECK_KINDS, Topology, parse_scenario};

mod support;

use support::repo;

/// README.md and every page of the book.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    let book = repo().join("docs/src");
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(&book)
        .expect("the book is in docs/src")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    chapters.sort();
    pages.extend(chapters);
    pages
}

/// Each fenced block of `text`: its info string, its first line number and its body.
fn blocks(text: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), i + 2, String::new())),
            (Some(_), Some(_)) => out.push(open.take().unwrap()),
            (Some((_, _, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// A fragment completed into a scenario the model can judge.
fn completed(snippet: &str) -> String {
    let has = |key: &str| snippet.lines().any(|l| l.trim_start().starts_with(key));
    let mut text = String::new();
    if !has("name =") || snippet.trim_start().starts_with('[') {
        text.push_str("name = \"docs-snippet\"\n");
    }
    text.push_str(snippet);
    if !has("[[nodes]]") {
        text.push_str(
            "\n[[nodes]]\nname = \"swarm-demo-1\"\nrole = \"manager\"\n[[nodes]]\nname = \"swarm-demo-2\"\n\
             [[nodes]]\nname = \"swarm-demo-3\"\n",
        );
    }
    text
}

#[test]
fn every_toml_snippet_in_the_docs_is_valid() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let shown = page.strip_prefix(repo()).unwrap().display().to_string();
        for (info, line, body) in blocks(&text) {
            let mut words = info.split([' ', ',']);
            if words.next() != Some("toml") {
                continue;
            }
            checked += 1;
            if words.any(|w| w == "hosts") {
                if let Err(e) = toml::from_str::<toml::Table>(&body) {
                    problems.push(format!("{shown}:{line}: the hosts file is not TOML: {e}"));
                }
                continue;
            }
            // Paths in a snippet (a stack's Compose files) are relative to its page.
            let at = format!("{}:{line}", page.display());
            if let Err(e) = parse_scenario(&at, &completed(&body)) {
                let each: Vec<String> = e.problems.iter().map(|p| format!("  {}", p.message)).collect();
                problems.push(format!(
                    "{shown}:{line}: the snippet is not a valid scenario:\n{}",
                    each.join("\n")
                ));
            }
        }
    }
    assert!(
        checked >= 3,
        "only {checked} TOML snippets found: is the fence parser broken?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_wrong_snippet_is_caught() {
    // What the test above would say of a check that names an undeclared network.
    let snippet = "[[checks]]\nkind = \"network\"\nnetwork = \"not-declared\"\n";
    assert!(parse_scenario("x", &completed(snippet)).is_err());
    assert!(parse_scenario("x", &completed("[digitalocean]\nregion = \"ams3\"\n")).is_ok());
}

/// The table of check kinds as the scenario reference must show it.
fn check_kinds_table() -> String {
    let mut out = String::from("| kind | keys | topologies | disruptive | what it proves |\n|---|---|---|---|---|\n");
    for kind in CHECK_KINDS {
        let keys: Vec<String> = kind
            .keys
            .iter()
            .map(|k| match k.required {
                true => format!("**`{}`** ({})", k.name, k.ty.describe()),
                false => format!("`{}` ({})", k.name, k.ty.describe()),
            })
            .collect();
        let topologies: Vec<&str> = kind
            .topologies
            .iter()
            .map(|t| match t {
                Topology::Swarm => "swarm",
                Topology::Classic => "classic",
            })
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            kind.name,
            if keys.is_empty() {
                "—".to_string()
            } else {
                keys.join(", ")
            },
            topologies.join(", "),
            if kind.disruptive { "yes" } else { "no" },
            kind.doc.replace('|', "\\|")
        ));
    }
    out
}

#[test]
fn the_scenario_reference_lists_every_check_kind_as_the_model_does() {
    let page = std::fs::read_to_string(repo().join("docs/src/scenarios.md")).unwrap();
    let start = "<!-- check-kinds:start -->\n";
    let end = "<!-- check-kinds:end -->";
    let (Some(a), Some(b)) = (page.find(start), page.find(end)) else {
        panic!("docs/src/scenarios.md has no {start:?} ... {end:?} markers");
    };
    let shown = &page[a + start.len()..b];
    let expected = check_kinds_table();
    assert!(
        shown == expected,
        "docs/src/scenarios.md's check kinds differ from CHECK_KINDS; put this between the markers:\n{expected}"
    );
}
