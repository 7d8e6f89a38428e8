//! `stack-removal`: `docker stack rm` leaves nothing of the stack behind: no service,
//! task, secret or config, and no container or network on any node, with the stack's
//! namespace label, within the bound. The CLI returns before the swarm is done (the
//! networks go last, after every task stopped: moby#29293), so what is left is waited on,
//! and named when it stays. The stack is then deployed again and must converge: `cycles`
//! rounds of removal and redeploy in a row must not exhaust the networks' addresses
//! (moby#37338). The stack is left deployed, as it was. Named volumes stay: `docker
//! stack rm` keeps data by design; they are said, not held against it.

use std::time::{Duration, Instant};

use super::probe::start_bound;
use super::{CheckEnv, Outcome};
use crate::stacks;
use crate::wait::poll_until;
use swarm_e2e_model::{Check, CheckKind};

/// Bound on one CLI command (it returns once the objects are asked to go).
const CLI_LIMIT: Duration = Duration::from_secs(60);

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::StackRemoval { stack, cycles } = &check.kind else {
        return Err(super::misrouted(check));
    };
    let Some(cli) = &env.docker_cli else {
        return Ok(Outcome::Failed("no docker CLI to remove the stack with".into()));
    };
    let manager = &env.cluster.manager().docker;
    // What the removal waits on lives on every node: a node whose engine is known to be
    // gone ends the wait with that cause.
    let needs = crate::watchdog::Needs {
        engines: env.cluster.nodes.iter().map(|n| n.name.clone()).collect(),
        swarm: true,
        ..Default::default()
    };
    let mut rounds = Vec::new();
    let mut kept = Vec::new();
    for cycle in 1..=*cycles {
        let round = format!("cycle {cycle} of {cycles}");
        let ids: Vec<String> = (stacks::services(manager, stack).await?.into_iter())
            .filter_map(|s| s.id)
            .collect();
        if ids.is_empty() {
            return Ok(Outcome::Failed(format!(
                "{round}: stack {stack} has no service to remove (it was never deployed, or something removed it)"
            )));
        }
        let started = Instant::now();
        if let Err(e) = stacks::remove(cli, &env.cluster, stack, CLI_LIMIT).await {
            return Ok(Outcome::Failed(format!("{round}: {e:#}")));
        }
        let cli_seconds = started.elapsed().as_secs_f64();
        let gone = poll_until(env.timeout, Duration::from_millis(250), || {
            let (ids, needs) = (&ids, &needs);
            async move {
                let left = stacks::leftovers(&env.cluster, stack, ids).await?;
                if left.objects.is_empty() && left.unasked.is_empty() {
                    return Ok(Some(Ok(left.volumes)));
                }
                let mut what: Vec<String> = (left.unasked.iter())
                    .map(|(node, e)| format!("whatever {node} holds (it cannot be asked: {e})"))
                    .collect();
                what.extend(left.objects);
                if let Some(why) = env.watchdog.facts().impossible(needs) {
                    return Ok(Some(Err(format!("left so far: {}\ncause: {why}", what.join(", ")))));
                }
                tracing::debug!("left: {}", what.join(", "));
                anyhow::bail!("left: {}", what.join(", "))
            }
        })
        .await;
        let volumes = match gone {
            Ok(Ok(v)) => v,
            Ok(Err(m)) => return Ok(Outcome::Failed(format!("{round}: the stack was not removed: {m}"))),
            Err(e) => {
                return Ok(Outcome::Failed(format!(
                    "{round}: `docker stack rm {stack}` returned after {cli_seconds:.1} s, but the stack was not \
                     gone {:.0} s later: {e:#}",
                    started.elapsed().as_secs_f64()
                )));
            }
        };
        kept.extend(volumes);
        let removed = started.elapsed().as_secs_f64();
        let redeployed = Instant::now();
        if let Err(m) = again(env, cli, stack).await {
            return Ok(Outcome::Failed(format!("{round}: removed in {removed:.1} s, then {m}")));
        }
        rounds.push(format!(
            "removed in {removed:.1} s (the CLI {cli_seconds:.1} s), converged again in {:.1} s",
            redeployed.elapsed().as_secs_f64()
        ));
    }
    kept.sort();
    kept.dedup();
    let volumes = match kept.is_empty() {
        true => String::new(),
        false => format!(
            "; its named volumes stay, as `docker stack rm` keeps data by design: {}",
            kept.join(", ")
        ),
    };
    tracing::info!(check = %check.name, "stack {stack}: {}{volumes}", rounds.join("; "));
    Ok(Outcome::Passed)
}

/// The stack deployed again, as the run first deployed it, and converged.
async fn again(env: &CheckEnv, cli: &stacks::DockerCli, stack: &str) -> Result<(), String> {
    let declared = env.scenario.stack(stack).expect("validated stack");
    stacks::redeploy(cli, &env.cluster, declared, &[], CLI_LIMIT)
        .await
        .map_err(|e| format!("deploying it again failed: {e:#}"))?;
    super::stack_converges::converged(env, stack, &declared.services, start_bound(env))
        .await
        .map_err(|m| format!("deployed again, it did not converge: {m}"))
}
