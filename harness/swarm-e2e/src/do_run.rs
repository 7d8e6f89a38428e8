//! The run loop for the DigitalOcean targets (real API or the in-process fake).
//!
//! For now the API-only dry run (`--no-engines`): the whole provisioning and teardown
//! path against the API, with the scenario's engine checks reported ignored, with that
//! reason. Droplets backed by real engines come next (see ARCHITECTURE.md).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use libtest_mimic::{Arguments, Completion, Trial};
use secrecy::SecretString;
use swarm_e2e_digitalocean::client::DoClient;
use swarm_e2e_digitalocean::fake::{FakeConfig, FakeDigitalOcean};
use swarm_e2e_model::Scenario;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::do_target::{self, DoResources, DoSettings};
use crate::pki::Pki;
use crate::report::{Event, Phase, Reporter};
use crate::run::{
    CheckRecord, Interrupt, PROVISION_GRACE, PhaseError, RunOptions, RunSummary, Target, exit, finish_phase,
    start_phase,
};

/// The environment variable the real target reads its token from (as doctl does).
pub const TOKEN_VAR: &str = "DIGITALOCEAN_ACCESS_TOKEN";

pub(crate) fn run(
    rt: &Runtime,
    scenario: &Arc<Scenario>,
    opts: &RunOptions,
    args: &Arguments,
    reporter: Arc<dyn Reporter>,
    interrupt: &Interrupt,
    mut summary: RunSummary,
) -> RunSummary {
    let no_engines = match &opts.target {
        Target::DoFake { no_engines, .. } | Target::DigitalOcean { no_engines } => *no_engines,
        Target::Local => unreachable!("local runs do not come here"),
    };
    if !no_engines {
        summary.exit_code = exit::INVALID_INPUT;
        summary.error = Some(format!(
            "engine checks on target {} are not available yet: droplets are provisioned, but not yet backed by engines \
             the harness can reach\nhint: add --no-engines for the API-only dry run, or use --target local",
            opts.target.name()
        ));
        return summary;
    }
    // The fake lives as long as the run; the client sees only a base URL and a token.
    let mut fake: Option<FakeDigitalOcean> = None;
    let client = match &opts.target {
        Target::DoFake {
            boot_latency, faults, ..
        } => {
            let f = rt.block_on(FakeDigitalOcean::start(
                FakeConfig {
                    boot_latency: *boot_latency,
                    faults: faults.clone(),
                    ..Default::default()
                },
                None,
            ));
            let c = DoClient::new(&f.base_url(), SecretString::from(f.token().to_string()));
            fake = Some(f);
            c
        }
        _ => match std::env::var(TOKEN_VAR) {
            Ok(token) if !token.trim().is_empty() => {
                let base = std::env::var("DIGITALOCEAN_API_URL")
                    .unwrap_or_else(|_| swarm_e2e_digitalocean::client::DEFAULT_BASE_URL.into());
                DoClient::new(&base, SecretString::from(token))
            }
            _ => {
                summary.exit_code = exit::INVALID_INPUT;
                summary.error = Some(format!(
                    "--target digitalocean needs an API token\nhint: export {TOKEN_VAR}=dop_v1_... (a token with droplet, \
                     tag, ssh_key and firewall scopes), or use --target do-fake for a dry run without an account"
                ));
                return summary;
            }
        },
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            summary.exit_code = exit::INFRASTRUCTURE;
            summary.error = Some(e.to_string());
            return summary;
        }
    };
    let mut settings = DoSettings::from_env();
    // The droplet wait gives up inside the phase bound, so its error (which names the
    // droplets not ready and their status) is the one reported.
    settings.boot_limit = scenario.timeouts.provision.mul_f64(0.9);
    if fake.is_some() {
        settings.poll_every = std::time::Duration::from_secs(1);
    }
    reporter.event(&Event::RunStarted {
        run_id: summary.run_id.clone(),
        scenario: scenario.name.clone(),
        target: opts.target.name().into(),
        nodes: scenario.nodes.len(),
    });
    let run_id = summary.run_id.clone();
    let created = Arc::new(Mutex::new(DoResources::default()));

    let result: Result<(), (i32, String)> = (|| {
        let pki = Pki::new(&run_id).map_err(|e| (exit::INFRASTRUCTURE, format!("{e:#}")))?;
        let started = start_phase(&reporter, Phase::Provision);
        let stop = CancellationToken::new();
        let (client2, scenario2, created2, settings2, run2, stop2) = (
            client.clone(),
            scenario.clone(),
            created.clone(),
            settings.clone(),
            run_id.clone(),
            stop.clone(),
        );
        let mut task = rt.spawn(async move {
            do_target::provision(&client2, &scenario2, &run2, &settings2, &pki, &created2, &stop2).await
        });
        let limit = scenario.timeouts.provision;
        let outcome = rt.block_on(async {
            let ended = tokio::select! {
                r = &mut task => return (Some(r), None),
                _ = tokio::time::sleep(limit) => PhaseError::Timeout(limit),
                _ = interrupt.stop.cancelled() => PhaseError::Interrupted,
            };
            // Let requests in flight land (a create answered late is still ours).
            stop.cancel();
            tokio::select! {
                r = &mut task => (Some(r), Some(ended)),
                _ = tokio::time::sleep(PROVISION_GRACE) => (None, Some(ended)),
                _ = interrupt.hurry.cancelled() => (None, Some(ended)),
            }
        });
        let result = match outcome {
            (_, Some(ended)) => Err(ended),
            (Some(Ok(Ok(nodes))), None) => Ok(nodes),
            (Some(Ok(Err(e))), None) => Err(PhaseError::Failed(e)),
            (_, None) => Err(PhaseError::Failed(anyhow::anyhow!("provisioning panicked"))),
        };
        let nodes = finish_phase(&reporter, &mut summary, Phase::Provision, started, result, |n| {
            format!("{} droplet(s) active", n.len())
        })?;
        summary.nodes = nodes
            .iter()
            .map(|n| crate::run::NodeRecord {
                name: n.name.clone(),
                role: scenario
                    .node(&n.name)
                    .map(|d| d.role.as_str())
                    .unwrap_or("worker")
                    .into(),
                address: n.address.to_string(),
                engine_version: "not started (--no-engines)".into(),
            })
            .collect();

        // Checks: reported ignored, with the reason, never passed.
        let started = start_phase(&reporter, Phase::Checks);
        let reason = "--no-engines: API-only dry run, no engine behind the droplets";
        let trials: Vec<Trial> = scenario
            .checks
            .iter()
            .map(|c| {
                Trial::ignorable_test(format!("{}::{}", scenario.name, c.name), move || {
                    Ok(Completion::ignored_with(reason))
                })
                .with_kind(c.kind.kind_name())
            })
            .collect();
        let conclusion = libtest_mimic::run(args, trials);
        summary.checks = scenario
            .checks
            .iter()
            .map(|c| CheckRecord {
                name: c.name.clone(),
                kind: c.kind.kind_name().into(),
                outcome: "ignored".into(),
                message: Some(reason.into()),
                duration: std::time::Duration::ZERO,
            })
            .collect();
        let elapsed = started.elapsed();
        summary.timings.record(Phase::Checks, elapsed);
        reporter.event(&Event::PhaseFinished {
            phase: Phase::Checks,
            elapsed,
            ok: true,
            detail: format!("{} ignored ({reason})", conclusion.num_ignored),
        });
        Ok(())
    })();
    if let Err((code, message)) = result {
        summary.exit_code = code;
        reporter.event(&Event::Note {
            text: format!("swarm-e2e: {message}"),
        });
        summary.error = Some(message);
    }

    // Teardown, always: by tag, verified.
    let started = Instant::now();
    reporter.event(&Event::PhaseStarted { phase: Phase::Teardown });
    let recorded = created.lock().unwrap().clone();
    let mut errors = rt.block_on(do_target::teardown(
        &client,
        &run_id,
        &recorded,
        scenario.timeouts.teardown,
    ));
    if let Some(f) = &fake {
        // The fake can say what is really left: the strongest leak check there is.
        let (droplets, keys, firewalls) = (f.live_droplets().len(), f.key_count(), f.firewall_count());
        if droplets + keys + firewalls > 0 {
            errors.push(format!(
                "left on the fake: {droplets} droplet(s), {keys} key(s), {firewalls} firewall(s)"
            ));
        }
    }
    let elapsed = started.elapsed();
    summary.timings.record(Phase::Teardown, elapsed);
    reporter.event(&Event::PhaseFinished {
        phase: Phase::Teardown,
        elapsed,
        ok: errors.is_empty(),
        detail: "droplets, firewall and SSH key removed by run tag".into(),
    });
    if !errors.is_empty() {
        for e in &errors {
            reporter.event(&Event::Note {
                text: format!("  teardown: {e}"),
            });
        }
        summary.leftovers = errors;
        summary.exit_code = exit::worst(summary.exit_code, exit::INFRASTRUCTURE);
    }
    if interrupt.stop.is_cancelled() {
        summary.exit_code = exit::INTERRUPTED;
    }
    let client_stats = client.stats();
    summary.digitalocean_requests = Some(serde_json::json!({
        "client": client_stats,
        "fake": fake.as_ref().map(|f| f.stats()),
    }));
    reporter.event(&Event::Note {
        text: format!(
            "  DigitalOcean API: {} request(s), {} retried, {} rate-limited",
            client_stats.requests, client_stats.retries, client_stats.rate_limited
        ),
    });
    summary
}
