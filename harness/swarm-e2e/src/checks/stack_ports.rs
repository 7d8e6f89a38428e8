//! `stack-ports`: every published TCP port of a stack answers where it should, tried
//! from another node's own network stack as a client outside the swarm would: a
//! host-mode port on each node one of the service's tasks runs on; an ingress port on
//! every node (the routing mesh), where the nodes' kernel has IPVS. UDP is not probed (a
//! datagram proves nothing without a reply the service may not send).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bollard::models::{EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, Service, TaskState};

use super::datapath::{TcpTry, rules_that_dropped, tcp_connects};
use super::probe::{node_of, start_bound, state_of};
use super::{CheckEnv, Outcome};
use crate::stacks::{self, short_name};
use swarm_e2e_model::{Check, CheckKind};

/// How long a port may take to answer once its task runs (the process inside may still
/// be starting when the task is running, unless it has a healthcheck).
const SETTLE: Duration = Duration::from_secs(20);

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::StackPorts { stack } = &check.kind else {
        return Err(super::misrouted(check));
    };
    let declared = env.scenario.stack(stack).expect("validated stack");
    if let Err(m) = super::stack_converges::converged(env, stack, &declared.services, start_bound(env)).await {
        return Ok(Outcome::Failed(format!("cannot check the ports: {m}")));
    }
    let manager = &env.cluster.manager().docker;
    let names = env.cluster.names_by_id();
    let all: Vec<String> = env.cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let mut tries: Vec<(String, u16, String)> = Vec::new();
    let mut ingress: Vec<String> = Vec::new();
    for s in stacks::services(manager, stack).await? {
        let name = s.spec.as_ref().and_then(|x| x.name.clone()).unwrap_or_default();
        let short = short_name(stack, &name).to_string();
        for (port, host_mode) in published_tcp(&s) {
            if host_mode {
                let tasks = stacks::tasks(manager, s.id.as_deref().unwrap_or_default()).await?;
                let on: BTreeSet<String> = (tasks.iter())
                    .filter(|t| t.desired_state == Some(TaskState::RUNNING) && state_of(t) == TaskState::RUNNING)
                    .map(|t| node_of(t, &names))
                    .collect();
                tries.extend(on.into_iter().map(|n| (n, port, short.clone())));
            } else if env.kernel.ipvs {
                tries.extend(all.iter().map(|n| (n.clone(), port, short.clone())));
            } else {
                ingress.push(format!("{short}'s tcp/{port}"));
            }
        }
    }
    if tries.is_empty() && ingress.is_empty() {
        return Ok(Outcome::Failed(format!(
            "stack {stack} publishes no TCP port: nothing to check (give a service `ports:`)"
        )));
    }
    let results = futures_util::future::join_all(
        tries
            .iter()
            .map(|(node, port, service)| answers(env, &check.name, &all, node, *port, service)),
    )
    .await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if !failures.is_empty() {
        return Ok(Outcome::Failed(failures.join("\n")));
    }
    if !ingress.is_empty() {
        return Ok(Outcome::Ignored(format!(
            "{} published through the ingress routing mesh, which needs IPVS in the nodes' kernel, and this \
             target's has none ({} host-mode port(s) answered)",
            ingress.join(", "),
            tries.len()
        )));
    }
    Ok(Outcome::Passed)
}

/// The service's published TCP ports: (published port, host mode).
fn published_tcp(s: &Service) -> Vec<(u16, bool)> {
    let ports = s.endpoint.as_ref().and_then(|e| e.ports.clone()).unwrap_or_default();
    ports
        .iter()
        .filter(|p| p.protocol.is_none_or(|pr| pr == EndpointPortConfigProtocolEnum::TCP))
        .filter_map(|p| {
            let port = u16::try_from(p.published_port?).ok()?;
            Some((port, p.publish_mode == Some(EndpointPortConfigPublishModeEnum::HOST)))
        })
        .collect()
}

/// Whether `node`'s `port` opens from another node (from itself on a one-node swarm),
/// tried until [`SETTLE`]; the failure names the rules that dropped it, if any did.
async fn answers(
    env: &CheckEnv,
    check: &str,
    all: &[String],
    node: &str,
    port: u16,
    service: &str,
) -> Result<(), String> {
    let from = all.iter().find(|n| *n != node).map(String::as_str).unwrap_or(node);
    let started = Instant::now();
    loop {
        let last = match tcp_connects(env, from, node, port, check).await {
            Ok(()) => return Ok(()),
            Err(TcpTry::Refused(why) | TcpTry::NotRun(why)) => why,
        };
        if started.elapsed() >= SETTLE {
            let rules = rules_that_dropped(env, &[node], &[("tcp", port)]).await;
            let cause = match rules.first().filter(|r| !r.is_empty()) {
                Some(r) => format!(
                    "\ncause: tcp/{port} to {node} is dropped by {node}'s firewall: {}",
                    r.join(", ")
                ),
                None => String::new(),
            };
            return Err(format!(
                "{service}'s tcp/{port} on {node} does not answer from {from} for {:.0} s: {last}{cause}",
                started.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
