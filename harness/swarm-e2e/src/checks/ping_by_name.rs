//! `ping-by-name`, the headline check: a probe on `from` resolves `target` by name over
//! the overlay and pings it.

use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::models::TaskState;
use swarm_e2e_model::{BUSYBOX, EndpointMode};

use super::probe::{answers, describe_tasks, exec, remove_probe, run_container, service_tasks, state_of};
use super::{CheckEnv, Outcome};
use crate::wait::poll_until;

/// The headline check: `from` resolves `target` by name over `network` and pings it.
pub(super) async fn run(
    env: &CheckEnv,
    check: &str,
    from: &str,
    network: &str,
    target: &str,
) -> anyhow::Result<Outcome> {
    if let Some(service) = env.scenario.service(target)
        && service.endpoint_mode == EndpointMode::Vip
        && !env.kernel.ipvs
    {
        return Ok(Outcome::Ignored(format!(
            "`{target}` uses VIP endpoint mode, which needs IPVS; this kernel has none (use endpoint_mode = \"dnsrr\")"
        )));
    }
    if env.scenario.network(network).is_some_and(|n| n.encrypted) && !env.kernel.esp {
        return Ok(Outcome::Ignored(format!(
            "`{network}` is an encrypted overlay (IPsec ESP between nodes), and this kernel has no ESP \
             (CONFIG_INET_ESP is not set): encrypted overlays cannot carry traffic here"
        )));
    }
    if let Some(e) = env.deploy_errors.get(target) {
        return Ok(Outcome::Failed(format!("target `{target}` could not be deployed: {e}")));
    }
    let names = env.cluster.names_by_id();
    let manager = &env.cluster.manager().docker;
    let node = env.cluster.node(from);
    let probe_name = format!("probe-{check}");
    let image = env.image(BUSYBOX);
    // A name only resolves once the target runs somewhere. The probe is attached only
    // after that: attaching a container to the overlay on a worker while the swarm is
    // still allocating the service's tasks failed now and then (measured: 2 of 7 runs,
    // "attaching to network failed ... context deadline exceeded" after 20 s).
    if env.scenario.service(target).is_some() {
        let ready = poll_until(env.timeout, Duration::from_millis(50), || async {
            let tasks = service_tasks(manager, target).await?;
            if tasks.iter().any(|t| state_of(t) == TaskState::RUNNING) {
                Ok(Some(()))
            } else {
                anyhow::bail!("no running task of `{target}`: {}", describe_tasks(&tasks, &names))
            }
        })
        .await;
        if let Err(e) = ready {
            return Ok(Outcome::Failed(format!("target never ran: {e:#}")));
        }
    }
    let probe = run_container(
        &node.docker,
        &env.cluster.run_id,
        &probe_name,
        &image,
        &["top".to_string()],
        Some(network),
    )
    .await
    .with_context(|| format!("starting probe container `{probe_name}` on {from} attached to {network}"))?;
    let outcome = probe_ping(env, &node.docker, &probe, from, network, target).await;
    let _ = remove_probe(&node.docker, &probe).await;
    outcome
}

async fn probe_ping(
    env: &CheckEnv,
    docker: &Docker,
    probe: &str,
    from: &str,
    network: &str,
    target: &str,
) -> anyhow::Result<Outcome> {
    // Step 1: name resolution (the embedded DNS learns remote names by gossip).
    let resolved = poll_until(env.timeout, Duration::from_millis(100), || async {
        let (code, out) = exec(docker, probe, &["nslookup", target]).await?;
        let addrs = answers(&out);
        if code == 0 && !addrs.is_empty() {
            Ok(Some(addrs))
        } else {
            anyhow::bail!("exit {code}: {}", out.trim())
        }
    })
    .await;
    let addrs = match resolved {
        Ok(a) => a,
        Err(e) => {
            return Ok(Outcome::Failed(format!(
                "name resolution failed: `{target}` did not resolve from {from} on {network}: {e:#}"
            )));
        }
    };
    // Step 2: reachability. The first packet over a fresh VXLAN path can be lost while
    // the peer's entry propagates, so a few tries are allowed within the bound.
    let reach_limit = env.timeout.min(Duration::from_secs(15));
    let pinged = poll_until(reach_limit, Duration::from_millis(200), || async {
        let (code, out) = exec(docker, probe, &["ping", "-c", "1", "-W", "2", target]).await?;
        if code == 0 {
            Ok(Some(()))
        } else {
            anyhow::bail!("exit {code}: {}", out.trim())
        }
    })
    .await;
    Ok(match pinged {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(format!(
            "reachability failed: `{target}` resolved to {} from {from}, but `ping -c 1 {target}` got no reply: {e:#}",
            addrs.join(", ")
        )),
    })
}
