//! The binary in its users' shells: completion scripts, the man page, colour that
//! follows `--color` and NO_COLOR on a real terminal (a pty from util-linux `script`),
//! and usage errors that exit 2.

mod support;

use std::process::{Command, Output};

use support::{BIN, repo};

/// Every subcommand, as `--help` lists them.
const SUBCOMMANDS: &[&str] = &[
    "validate",
    "run",
    "matrix",
    "plan",
    "node-image",
    "fake-do",
    "down",
    "env",
    "load",
    "ls",
    "doctor",
    "sweep",
    "completions",
    "schema",
    "man",
];

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(repo()).output().unwrap()
}

#[test]
fn help_lists_exactly_the_subcommands_the_completions_know() {
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    for sub in SUBCOMMANDS {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "--help does not list `{sub}`:\n{help}"
        );
    }
}

#[test]
fn completions_for_bash_and_zsh_mention_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "completions {shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.len() > 1000, "completions {shell} is nearly empty: {script}");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "completions {shell} do not mention `{sub}`");
        }
        // Flags of subcommands too, not only their names.
        assert!(
            script.contains("--inject-fault") || script.contains("inject-fault"),
            "{shell}: run's flags missing"
        );
    }
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn completions_are_valid_bash() {
    let out = run(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("swarm-e2e.bash");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn man_page_is_roff_with_every_subcommand() {
    let out = run(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.contains(".TH swarm-e2e 1"),
        "no roff title: {}",
        &page[..page.len().min(300)]
    );
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&sub.replace('-', "\\-")),
            "the man page does not mention `{sub}`"
        );
    }
}

/// `swarm-e2e ARGS` on a pseudo-terminal, with `env` added; what the terminal showed.
fn on_a_terminal(args: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{BIN} {args}"), "/dev/null"])
        .current_dir(repo())
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("util-linux `script` runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_follows_no_color_and_the_flag_on_a_terminal() {
    let bad = "validate fixtures/bad/classic-misuse.toml";
    // The same terminal shows colour by default: the test below could fail.
    let coloured = on_a_terminal(bad, &[]);
    assert!(coloured.contains('\x1b'), "expected colour on a terminal: {coloured}");
    assert!(coloured.contains("ingress"), "the problem itself is shown: {coloured}");

    for (args, env) in [
        (bad.to_string(), vec![("NO_COLOR", "1")]),
        (format!("--color never {bad}"), vec![]),
        (format!("{bad} --color never"), vec![]),
    ] {
        let plain = on_a_terminal(&args, &env);
        assert!(!plain.contains('\x1b'), "escape codes with {args} {env:?}: {plain:?}");
        assert!(plain.contains("ingress"), "the problem is still shown: {plain}");
    }
    // An empty NO_COLOR does not count (no-color.org).
    assert!(on_a_terminal(bad, &[("NO_COLOR", "")]).contains('\x1b'));
    // Logs honour it too.
    let logs = on_a_terminal(
        "--color never validate scenarios/swarm-demo.toml",
        &[("RUST_LOG", "debug")],
    );
    assert!(!logs.contains('\x1b'), "escape codes in logs: {logs:?}");
}

#[test]
fn colour_is_off_when_the_output_is_no_terminal() {
    let out = run(&["validate", "fixtures/bad/classic-misuse.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains('\x1b'), "escape codes in a pipe: {text:?}");
    let forced = run(&["--color", "always", "validate", "fixtures/bad/classic-misuse.toml"]);
    assert!(
        String::from_utf8_lossy(&forced.stderr).contains('\x1b'),
        "--color always"
    );
}

#[test]
fn long_version_names_commit_recipe_and_engines() {
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let commit = text
        .lines()
        .find_map(|l| l.strip_prefix("commit: "))
        .unwrap_or_else(|| panic!("no commit line: {text}"));
    let hash = commit.trim_end_matches("-dirty");
    assert!(
        hash == "unknown" || (hash.len() == 12 && hash.chars().all(|c| c.is_ascii_hexdigit())),
        "commit `{commit}`"
    );
    assert!(
        text.contains(&format!("node-image recipe: {}", swarm_e2e::images::NODE_IMAGE_RECIPE)),
        "{text}"
    );
    for release in swarm_e2e::images::ENGINE_RELEASES {
        assert!(
            text.contains(release.engine),
            "engine {} missing: {text}",
            release.engine
        );
    }
    // The short form stays one line, as scripts parse it.
    let short = String::from_utf8(run(&["-V"]).stdout).unwrap();
    assert_eq!(short.trim(), format!("swarm-e2e {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn each_problem_is_shown_once_in_our_words() {
    // In a pipe: one grep-able line per problem.
    let out = run(&["validate", "fixtures/bad/huge-numbers.toml", "no/such/file.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(text.matches("5000 replicas is more than 1000").count(), 1, "{text}");
    assert!(
        text.contains("huge-numbers.toml:9:12: expected a whole number, 0 or more, found 99999999999999999999999, which is too large"),
        "serde's words leak: {text}"
    );
    assert!(!text.contains("i128") && !text.contains("u64"), "{text}");
    // A file that cannot be read has no line and column.
    assert!(text.contains("no/such/file.toml: cannot read the file"), "{text}");
    assert!(!text.contains("file.toml:1:1"), "{text}");

    // On a terminal: framed with the source line, and not repeated as a line.
    let shown = on_a_terminal("--color never validate fixtures/bad/huge-numbers.toml", &[]);
    assert_eq!(shown.matches("5000 replicas is more than 1000").count(), 1, "{shown}");
    assert!(shown.contains("replicas = 5000"), "no source excerpt: {shown}");
}

/// The checks `run` would run, as `-- --list` names them (no cluster is built).
fn listed(extra: &[&str]) -> Vec<String> {
    let scenarios: Vec<String> = std::fs::read_dir(repo().join("scenarios"))
        .unwrap()
        .map(|e| format!("scenarios/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|p| p.ends_with(".toml"))
        .collect();
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend(scenarios.iter().map(String::as_str));
    args.extend(["--", "--list"]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(|l| l.split_once("] ").map_or(l, |(_, n)| n).to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn shards_together_run_exactly_the_unsharded_checks_disjointly() {
    let all = listed(&[]);
    assert!(all.len() > 40, "the shipped scenarios have many checks: {all:?}");
    for kind in ["count", "hash"] {
        for of in [2, 3] {
            let shards: Vec<Vec<String>> = (1..=of)
                .map(|k| listed(&["--partition", &format!("{kind}:{k}/{of}")]))
                .collect();
            let mut union: Vec<String> = shards.concat();
            union.sort();
            assert_eq!(
                union, all,
                "{kind}:K/{of}: the shards together are not the unsharded run (or overlap)"
            );
            assert!(
                shards.iter().all(|s| !s.is_empty()),
                "{kind}:K/{of}: an empty shard of {} checks",
                all.len()
            );
            if kind == "count" {
                let (min, max) = (
                    shards.iter().map(Vec::len).min().unwrap(),
                    shards.iter().map(Vec::len).max().unwrap(),
                );
                assert!(max - min <= 1, "count:K/{of} is uneven: {min}..{max}");
            }
        }
    }
    // The same shard twice is the same checks (stable, as on another machine).
    assert_eq!(
        listed(&["--partition", "hash:1/3"]),
        listed(&["--partition", "hash:1/3"])
    );
    let bad = run(&["run", "--partition", "count:3/2", "scenarios/swarm-demo.toml"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// Every `--format json` document: the derived schema is the checked-in one, and what
/// the command prints on this machine validates against it.
#[test]
fn json_listings_validate_against_their_derived_schemas() {
    let documents = [
        ("ls", vec!["ls"]),
        ("node-image-ls", vec!["node-image", "ls"]),
        ("sweep", vec!["sweep"]),
        ("doctor", vec!["doctor", "--nodes", "2"]),
        (
            "plan",
            vec!["plan", "scenarios/swarm-demo.toml", "scenarios/swarm-demo-classic.toml"],
        ),
    ];
    // Every derived schema is the checked-in one (the reports' too: the suites validate
    // run and matrix reports against the checked-in files).
    let derived_schema = |name: &str| -> serde_json::Value {
        let out = run(&["schema", name]);
        assert_eq!(out.status.code(), Some(0), "schema {name}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for &name in swarm_e2e::cli::listing::SCHEMAS {
        let path = repo().join(format!("harness/swarm-e2e/schemas/{name}.schema.json"));
        assert_eq!(
            derived_schema(name),
            support::schema(name),
            "the schema of `{name}` changed: if on purpose (and its schema version bumped where \
             incompatible), run `swarm-e2e schema {name} > {}`",
            path.display()
        );
    }
    let checked_in_files = std::fs::read_dir(repo().join("harness/swarm-e2e/schemas"))
        .unwrap()
        .count();
    assert_eq!(
        checked_in_files,
        swarm_e2e::cli::listing::SCHEMAS.len(),
        "a schema file no document has, or one not compared here"
    );
    for (name, command) in documents {
        let derived = derived_schema(name);
        let mut args = command.clone();
        args.extend(["--format", "json"]);
        let out = run(&args);
        // doctor exits 3 when something here is missing (a node image): still a document.
        let codes: &[i32] = if name == "doctor" { &[0, 3] } else { &[0] };
        assert!(
            out.status.code().is_some_and(|c| codes.contains(&c)),
            "{args:?}: {out:?}"
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
        let validator = jsonschema::validator_for(&derived).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{args:?} violates its schema: {errors:?}\n{doc:#}");
        assert_eq!(doc["schema_version"], 1);
        if name == "doctor" {
            assert_eq!(doc["usable"], out.status.success(), "the exit code and `usable` agree");
        }
        if name == "plan" {
            // The classic scenario's plan starts with its key-value store droplet.
            assert_eq!(doc["plans"][1]["droplets"][0]["role"], "kv-store", "{doc:#}");
            assert_eq!(doc["plans"].as_array().map(Vec::len), Some(2));
        }
    }
    // A wrong document fails the same validation: the check above can fail.
    let validator = jsonschema::validator_for(&derived_schema("ls")).unwrap();
    assert!(!validator.is_valid(&serde_json::json!({"schema_version": 1, "runs": [{"run_id": 7}]})));
    let report = jsonschema::validator_for(&derived_schema("run-report")).unwrap();
    let wrong_outcome = serde_json::json!({"schema_version": 2, "tool_version": "0.1.0", "runs": [{
        "run_id": "ab12cd34", "target": "local", "scenario": "s", "scenario_file": "s.toml",
        "exit_code": 0, "nodes": [], "phases": [], "leftovers": [],
        "checks": [{"name": "c", "kind": "ping", "outcome": "fine", "attempts": 1, "seconds": 1.0}]}]});
    assert!(
        !report.is_valid(&wrong_outcome),
        "an unknown outcome must fail the run report's schema"
    );
    let mut right = wrong_outcome.clone();
    right["runs"][0]["checks"][0]["outcome"] = "flaky".into();
    assert!(
        report.is_valid(&right),
        "{:?}",
        report.iter_errors(&right).map(|e| e.to_string()).collect::<Vec<_>>()
    );
}

/// A download that takes its time says it is alive in a CI log: heartbeat lines at the
/// interval asked (`SWARM_E2E_HEARTBEAT`), none once it is over. The server answers after
/// 3 s with bytes that are no archive, so the build then fails without building anything.
#[test]
fn a_slow_download_beats_a_heartbeat_in_a_log() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(wiremock::MockServer::start());
    rt.block_on(
        wiremock::Mock::given(wiremock::matchers::path("/slow/docker.tgz"))
            .respond_with(
                wiremock::ResponseTemplate::new(200)
                    .set_body_bytes(b"not an archive".to_vec())
                    .set_delay(std::time::Duration::from_secs(3)),
            )
            .mount(&server),
    );
    let url = format!("{}/slow/docker.tgz", server.uri());
    let out = Command::new(BIN)
        .args(["node-image", "build", "--static", &url, "--engine", "27.0.0-hb.1"])
        .current_dir(repo())
        .env("CI", "1")
        .env("SWARM_E2E_HEARTBEAT", "1s")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("unpacking"), "{stderr}");
    let beats = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("downloading {url}: still going after ")))
        .count();
    // 3 s at one a second: 2 or 3 (the third races the answer), never a beat a step.
    assert!((2..=3).contains(&beats), "{beats} heartbeat(s):\n{stderr}");
    assert!(!stderr.contains("\x1b["), "escape codes in a log:\n{stderr}");
}
