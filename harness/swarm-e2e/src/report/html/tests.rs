use std::path::Path;
use std::time::Duration;

use super::*;
use crate::report::{CheckOutcome, NodeRecord, Phase, SlowestWait, Timings};

/// A synthetic run: `n` nodes (the first a manager), 40 checks, one failing on a path.
pub fn synthetic_run(n: usize) -> RunSummary {
    let nodes: Vec<NodeRecord> = (1..=n)
        .map(|i| NodeRecord {
            name: format!("s-{i}"),
            role: if i == 1 { "manager" } else { "worker" }.into(),
            address: format!("10.0.{}.{}", i / 250, i % 250 + 2),
            engine_version: "20.10.24+dfsg1".into(),
            labels: [("tier".to_string(), format!("t{}", i % 3))].into(),
            engine_labels: Default::default(),
        })
        .collect();
    let mut checks: Vec<CheckRecord> = (0..40)
        .map(|i| CheckRecord {
            name: format!("check-{i}"),
            kind: "ping-by-name".into(),
            outcome: CheckOutcome::Passed,
            message: None,
            duration: Duration::from_millis(900 + i * 37),
            started: Duration::from_millis(i * 120),
            nodes: vec![format!("s-{}", i as usize % n + 1)],
            line: None,
            failed_attempts: Vec::new(),
            slowest_wait: None,
            queued: Duration::ZERO,
        })
        .collect();
    checks[3].outcome = CheckOutcome::Failed;
    checks[3].message = Some(format!(
        "s-3 cannot reach <web>\ncause: udp/4789 from s-{n} to s-2 is dropped by s-2's firewall (rule 7)"
    ));
    checks[5].failed_attempts = vec!["timed out".into()];
    checks[39].queued = Duration::from_secs(3);
    let mut timings = Timings::default();
    for (p, s) in [
        (Phase::Provision, 4),
        (Phase::EnginesReady, 3),
        (Phase::ClusterFormed, 5),
        (Phase::Checks, 9),
        (Phase::Teardown, 2),
    ] {
        timings.record(p, Duration::from_secs(s));
    }
    RunSummary {
        run_id: "abcd1234".into(),
        started_at: std::time::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
        scenario: "synthetic".into(),
        source: "scenarios/synthetic.toml".into(),
        target: "local".into(),
        exit_code: crate::exit::CHECK_FAILED,
        timings,
        checks,
        declared_nodes: nodes.clone(),
        nodes,
        networks: vec!["app-net".into()],
        stacks: Vec::new(),
        error: None,
        leftovers: Vec::new(),
        artifacts: Some("target/swarm-e2e-artifacts/abcd1234".into()),
        digitalocean_requests: None,
    }
}

#[test]
fn a_failing_path_is_drawn_as_a_directed_red_edge_with_its_cause() {
    let page = render_runs(&[synthetic_run(3)], Path::new("target/report.html")).unwrap();
    assert!(
        page.contains("class=\"broken-path\" data-from=\"s-3\" data-to=\"s-2\""),
        "{page}"
    );
    assert!(page.contains("marker-end=\"url(#checks0-arrow)\""));
    assert!(page.contains("✗ udp/4789 check-3"));
    assert!(page.contains("udp/4789 from s-3 to s-2 is dropped by s-2&#39;s firewall (rule 7)"));
    // Text is escaped everywhere.
    assert!(page.contains("cannot reach &lt;web&gt;") && !page.contains("<web>"));
    assert!(page.contains("≈ flaky"));
    assert!(page.contains("after 3.0 s waiting for its turn</title>"));
    assert!(page.contains("stroke-dasharray=\"3 3\""));
    assert!(
        page.contains("href=\"swarm-e2e-artifacts/abcd1234/\""),
        "artefacts relative to the page"
    );
}

#[test]
fn a_hundred_node_page_is_grouped_and_under_a_megabyte() {
    let page = render_runs(&[synthetic_run(100)], Path::new("report.html")).unwrap();
    assert!(page.len() < 1_000_000, "{} bytes", page.len());
    assert!(page.contains("1 manager(s), 99 worker(s)"));
    assert!(page.contains("data-from=\"s-100\" data-to=\"s-2\""));
    // Every node is in the table as text too.
    assert!(page.contains("<td>s-57</td>"));
}

#[test]
fn a_node_named_by_a_failure_is_marked_with_its_state() {
    let mut run = synthetic_run(3);
    run.checks[3].message = Some("no answer\ncause: s-2: its node container is paused".into());
    let page = render_runs(&[run], Path::new("r.html")).unwrap();
    assert!(page.contains("⚠ paused"), "{page}");
    assert!(!page.contains("class=\"broken-path\""));
}

#[test]
fn links_are_relative_to_the_page() {
    assert_eq!(relative_link(Path::new("/a/b/c"), Path::new("/a/page.html")), "b/c/");
    assert_eq!(relative_link(Path::new("/a/b"), Path::new("/a/x/page.html")), "../b/");
    assert_eq!(relative_link(Path::new("/a"), Path::new("/a/page.html")), ".");
}

#[test]
fn the_page_fetches_nothing() {
    let page = render_runs(&[synthetic_run(3)], Path::new("r.html")).unwrap();
    assert!(page.contains("default-src 'none'"));
    for fetch in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!page.contains(fetch), "{fetch}");
    }
}

#[test]
fn nodes_that_never_answered_are_drawn_and_the_one_the_error_names_is_marked() {
    let mut run = synthetic_run(3);
    run.nodes.clear();
    run.checks.clear();
    run.error = Some("phase `engines ready` failed: node s-2 is gone: its container exited with code 1".into());
    let page = render_runs(&[run], Path::new("r.html")).unwrap();
    assert!(page.contains("no answer (asked 20.10.24+dfsg1)"), "{page}");
    assert!(page.contains("⚠ gone"), "{page}");
    assert!(page.contains("✗ the run: phase `engines ready` failed"));
}

#[test]
fn a_passing_check_that_used_most_of_a_bound_says_so() {
    let mut run = synthetic_run(3);
    let wait = |seconds| {
        Some(SlowestWait {
            seconds,
            bound_seconds: 60.0,
            at: "src/checks/dns.rs:88".into(),
        })
    };
    run.checks[0].slowest_wait = wait(41.5);
    run.checks[1].slowest_wait = wait(2.0);
    let page = render_runs(&[run], Path::new("target/report.html")).unwrap();
    assert!(
        page.contains("⚠ longest wait 41.5 s of its 60 s bound (src/checks/dns.rs:88)"),
        "{page}"
    );
    assert!(page.contains("title=\"longest wait 2.0 s of its 60 s bound (src/checks/dns.rs:88)\""));
    assert!(!page.contains("⚠ longest wait 2.0 s"));
}
