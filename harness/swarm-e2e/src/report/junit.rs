//! The JUnit XML report of finished runs: one testsuite per scenario run, one testcase
//! per check; ignored and unsupported checks are `skipped` with their reason. Failed
//! attempts before the last one are written as nextest does: `flakyFailure` in a test
//! that passed in the end, `rerunFailure` in one that did not.

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::{CheckOutcome, RunSummary};

pub fn render(runs: &[RunSummary]) -> anyhow::Result<String> {
    let mut report = Report::new("swarm-e2e");
    for run in runs {
        let mut suite = TestSuite::new(run.scenario.clone());
        suite.add_property(Property::new("run_id", run.run_id.clone()));
        suite.add_property(Property::new("target", run.target.clone()));
        suite.add_property(Property::new("scenario_file", run.source.clone()));
        suite.add_property(Property::new("exit_code", run.exit_code.to_string()));
        for n in &run.nodes {
            suite.add_property(Property::new(format!("engine.{}", n.name), n.engine_version.clone()));
        }
        suite.set_time(run.timings.total());
        for c in &run.checks {
            let status = match c.outcome {
                CheckOutcome::Passed => TestCaseStatus::success(),
                CheckOutcome::Ignored | CheckOutcome::Unsupported => {
                    let mut s = TestCaseStatus::skipped();
                    if let Some(m) = &c.message {
                        s.set_message(if c.outcome == CheckOutcome::Unsupported {
                            format!("unsupported: {m}")
                        } else {
                            m.clone()
                        });
                    }
                    s
                }
                CheckOutcome::Failed => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    if let Some(m) = &c.message {
                        s.set_message(first_line(m));
                        s.set_description(m.clone());
                    }
                    s
                }
            };
            let mut status = status;
            if c.outcome != CheckOutcome::Ignored && c.outcome != CheckOutcome::Unsupported {
                status.add_reruns(c.failed_attempts.iter().map(|m| {
                    let mut rerun = TestRerun::new(NonSuccessKind::Failure);
                    rerun.set_message(first_line(m));
                    rerun.set_description(m.clone());
                    rerun
                }));
            }
            let mut case = TestCase::new(c.name.clone(), status);
            case.set_classname(format!("{}.{}", run.scenario, c.kind));
            case.set_time(c.duration);
            if let Some(m) = &c.message {
                case.set_system_out(m.clone());
            }
            suite.add_test_case(case);
        }
        // A run that never reached its checks still shows up, as one failing case.
        if let Some(e) = &run.error
            && run.checks.is_empty()
        {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(first_line(e));
            status.set_description(e.clone());
            suite.add_test_case(TestCase::new("run", status));
        }
        report.add_test_suite(suite);
    }
    Ok(report.to_string()?)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}
