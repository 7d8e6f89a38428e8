//! Every malformed scenario under fixtures/bad is refused with every problem located
//! (file:line:column) and explained; the rendered problems are snapshot-tested.

use std::path::Path;

use swarm_e2e_model::{MAX_NODES, parse_scenario, parse_scenario_file};

#[test]
fn bad_scenarios_report_located_problems() {
    insta::glob!("../../../fixtures/bad", "*.toml", |path| {
        let err = parse_scenario_file(path).expect_err("a bad fixture must not validate");
        assert!(!err.problems.is_empty());
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let shown = format!("fixtures/bad/{name}");
        let lines: Vec<String> = err
            .short_lines()
            .into_iter()
            // Paths under the fixture's folder (a stack's Compose files) read the same
            // on every machine.
            .map(|l| l.replace(&path.parent().unwrap().display().to_string(), "fixtures/bad"))
            .collect();
        for l in &lines {
            let rest = l.strip_prefix(&shown).expect("every line starts with the file");
            let mut parts = rest.splitn(4, ':');
            assert_eq!(parts.next(), Some(""));
            assert!(parts.next().unwrap().parse::<usize>().is_ok(), "line number in {l}");
            assert!(parts.next().unwrap().parse::<usize>().is_ok(), "column in {l}");
        }
        insta::assert_snapshot!(lines.join("\n"));
    });
}

#[test]
fn shipped_scenarios_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            parse_scenario_file(&path).unwrap_or_else(|e| panic!("{}", e.short_lines().join("\n")));
            n += 1;
        }
    }
    assert!(n >= 2, "scenarios/ ships at least two scenarios");
}

#[test]
fn ten_thousand_nodes_are_refused_with_one_problem() {
    let mut text = String::from("name = \"big\"\n");
    for i in 0..10_000 {
        text.push_str(&format!("[[nodes]]\nname = \"n{i}\"\nrole = \"manager\"\n"));
    }
    let err = parse_scenario("big.toml", &text).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].message.contains(&format!("at most {MAX_NODES}")));
    assert_eq!(err.line_col(err.problems[0].span.clone().unwrap().start).0, 2);
}

#[test]
fn classic_constraint_becomes_swarm_hostname() {
    let text = r#"
name = "seed"
[[nodes]]
name = "swarm-demo-1"
role = "manager"
[[nodes]]
name = "swarm-demo-2"
[[services]]
name = "foo"
constraints = ["constraint:node==swarm-demo-2"]
[[checks]]
kind = "placement"
service = "foo"
"#;
    let s = parse_scenario("seed.toml", text).unwrap();
    assert_eq!(s.services[0].constraints[0].to_string(), "node.hostname==swarm-demo-2");
    match &s.checks[0].kind {
        swarm_e2e_model::CheckKind::Placement { expect_nodes, .. } => {
            assert_eq!(expect_nodes, &["swarm-demo-2"])
        }
        other => panic!("{other:?}"),
    }
}

/// A check knows its line (where a CI annotation points): the line of its `[[checks]]`
/// header; the implicit `declared-state` has none.
#[test]
fn checks_know_their_lines() {
    let text = "name = \"lines\"\n\n[[nodes]]\nname = \"n1\"\nrole = \"manager\"\n\n[[services]]\nname = \"web\"\n\n\
                [[checks]]\nname = \"first\"\nkind = \"placement\"\nservice = \"web\"\n\n\
                # a comment\n[[checks]]\nkind = \"placement\"\nname = \"second\"\nservice = \"web\"\n";
    let s = parse_scenario("lines.toml", text).unwrap_or_else(|e| panic!("{}", e.short_lines().join("\n")));
    let line = |name: &str| s.checks.iter().find(|c| c.name == name).unwrap().line;
    let header = |nth: usize| {
        text.lines()
            .enumerate()
            .filter(|(_, l)| *l == "[[checks]]")
            .nth(nth)
            .unwrap()
            .0
            + 1
    };
    for (name, nth) in [("first", 0), ("second", 1)] {
        let got = line(name).expect("a declared check has a line");
        assert!(got == header(nth), "{name}: line {got}, header on {}", header(nth));
    }
    assert_eq!(line(swarm_e2e_model::IMPLICIT_STATE_CHECK), None);
}

#[test]
fn a_stacks_secret_and_config_files_are_found_where_the_cli_finds_them() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/compose-stack.toml");
    let scenario = parse_scenario_file(&path).unwrap_or_else(|e| panic!("{}", e.short_lines().join("\n")));
    let shop = scenario.stack("shop").expect("the shipped stack");
    let folder = path.parent().unwrap().join("compose-stack");
    // Relative to the first Compose file's folder, as the CLI resolves `file:`.
    assert_eq!(shop.secret_files.get("api_key"), Some(&folder.join("./api_key.txt")));
    assert_eq!(shop.config_files.get("index"), Some(&folder.join("./index.html")));
    assert!(shop.secret_files["api_key"].is_file());
}
