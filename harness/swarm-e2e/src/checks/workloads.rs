//! The scenario's workloads (services on the first manager, plain containers on their
//! node), deployed once before the checks start.

use std::collections::HashMap;

use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecPlacementPreferences,
    TaskSpecPlacementSpread,
};
use futures_util::future::join_all;
use swarm_e2e_model::{EndpointMode, Scenario, ServiceMode};

use super::probe::run_container_with_aliases;
use crate::cluster::Cluster;

/// Creates every service (on the first manager) and plain container (on its node) of
/// the scenario, concurrently. Returns the ones that failed, by name.
pub async fn deploy_workloads(
    scenario: &Scenario,
    cluster: &Cluster,
    images: &HashMap<String, String>,
) -> HashMap<String, String> {
    let image = |n: &str| images.get(n).cloned().unwrap_or_else(|| n.to_string());
    let manager = &cluster.manager().docker;
    let services = scenario.services.iter().map(|s| {
        let spec = ServiceSpec {
            name: Some(s.name.clone()),
            labels: Some(crate::marks::workload_labels(&cluster.run_id)),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    // Task containers carry the run's marks too: teardown on engines
                    // the run does not own finds them by label.
                    labels: Some(crate::marks::workload_labels(&cluster.run_id)),
                    image: Some(image(&s.image)),
                    command: Some(s.command.clone()),
                    // busybox `top` as PID 1 ignores SIGTERM; an init stops it at once.
                    init: Some(true),
                    stop_grace_period: Some(1_000_000_000),
                    ..Default::default()
                }),
                placement: Some(TaskSpecPlacement {
                    constraints: Some(s.constraints.iter().map(|c| c.to_string()).collect()),
                    preferences: Some(
                        s.preferences
                            .iter()
                            .map(|p| TaskSpecPlacementPreferences {
                                spread: Some(TaskSpecPlacementSpread {
                                    spread_descriptor: p.strip_prefix("spread=").map(str::to_string),
                                }),
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                networks: Some(
                    s.networks
                        .iter()
                        .map(|n| NetworkAttachmentConfig {
                            target: Some(n.clone()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            mode: Some(match s.mode {
                ServiceMode::Replicated { replicas } => ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated {
                        replicas: Some(replicas as i64),
                    }),
                    ..Default::default()
                },
                ServiceMode::Global => ServiceSpecMode {
                    global: Some(HashMap::new()),
                    ..Default::default()
                },
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(match s.endpoint_mode {
                    EndpointMode::Dnsrr => EndpointSpecModeEnum::DNSRR,
                    EndpointMode::Vip => EndpointSpecModeEnum::VIP,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        async move {
            let r = manager.create_service(spec, None).await;
            (
                s.name.clone(),
                r.map(|_| ()).map_err(|e| format!("creating service {}: {e}", s.name)),
            )
        }
    });
    let containers = scenario
        .containers
        .iter()
        .map(|c| start_container(cluster, c, image(&c.image)));
    let mut failed = HashMap::new();
    // Containers first: a standalone container on an overlay needs an attachment from
    // the managers, which timed out after 20 s ("attaching to network failed … context
    // deadline exceeded", 1 conformance run in 10) while they were allocating every
    // service's tasks at the same moment.
    let b = join_all(containers).await;
    let a = join_all(services).await;
    for (name, r) in a.into_iter().chain(b) {
        if let Err(e) = r {
            failed.insert(name, e);
        }
    }
    failed
}

/// Starts one of the scenario's standalone containers on its node: (its name, the error).
async fn start_container(
    cluster: &Cluster,
    c: &swarm_e2e_model::Container,
    img: String,
) -> (String, Result<(), String>) {
    let docker = &cluster.node(&c.node).docker;
    let start = || {
        run_container_with_aliases(
            docker,
            &cluster.run_id,
            &c.name,
            &img,
            &c.command,
            c.networks.first().map(String::as_str),
            &c.aliases,
        )
    };
    let r = match start().await {
        // The engine asks the managers for the container's overlay attachment and gives
        // up after 20 s when they are slow; once is the engine's hiccup, and the
        // container it left is removed before the second try.
        Err(e) if format!("{e:#}").contains("attaching to network failed") => {
            tracing::info!(container = %c.name, "its network attachment timed out; starting it again: {e:#}");
            let remove = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
                .force(true)
                .build();
            let _ = docker.remove_container(&c.name, Some(remove)).await;
            start().await
        }
        r => r,
    };
    (
        c.name.clone(),
        r.map(|_| ())
            .map_err(|e| format!("starting container {} on {}: {e:#}", c.name, c.node)),
    )
}
