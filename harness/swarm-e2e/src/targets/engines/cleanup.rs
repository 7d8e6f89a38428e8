//! Teardown on the user's engines: only what the run made goes (the services of the
//! swarm it formed, stacks' included; the run's containers and networks,
//! `docker_gwbridge` and the test image if they were not there before), and the swarm is
//! left, workers first.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::NetworkDisconnectRequest;
use bollard::query_parameters::{
    LeaveSwarmOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListServicesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures_util::future::join_all;

use super::{Before, Engine, EnginesTarget, GWBRIDGE};
use crate::images::BUSYBOX_IMAGE;
use crate::marks;
use crate::targets::TeardownReport;

impl EnginesTarget {
    /// Services first (any manager removes them), then the swarm (workers before
    /// managers), then on every engine what carries the run's label or was not there
    /// before: containers, networks, the test image. Removing a network races the
    /// engine's own cleanup of task endpoints, so the last step is retried, bounded.
    pub(super) async fn remove_what_the_run_made(&self, run_id: &str, limit: Duration) -> TeardownReport {
        let engines = self.touched();
        let before = self.before.lock().unwrap().clone();
        let filter = marks::run_filter(Some(run_id));
        let mut errors = Vec::new();
        let mut removed = 0usize;
        let clients: Vec<(&Engine, Docker)> = engines
            .iter()
            .filter_map(|e| match e.connect() {
                Ok(d) => Some((*e, d)),
                Err(err) => {
                    errors.push(format!("{err:#}"));
                    None
                }
            })
            .collect();
        let mut deleted = Vec::new();
        // Every service of the swarm: the run formed it (preflight refuses engines already
        // in one), and a stack's services carry the CLI's namespace label, not the run's.
        for (e, docker) in &clients {
            let Ok(services) = docker
                .list_services(Some(ListServicesOptionsBuilder::new().build()))
                .await
            else {
                continue;
            };
            for s in services {
                let id = s.id.unwrap_or_default();
                match docker.delete_service(&id).await {
                    Ok(()) => {
                        removed += 1;
                        deleted.push(id);
                    }
                    Err(err) => errors.push(format!("service {id} via {}: {err}", e.node)),
                }
            }
            break;
        }
        // An engine that leaves while its tasks still shut down keeps their overlay
        // state (sandboxes, gossip of those networks): the next swarm it joins did not
        // converge on such an engine (CI, twice: a peer missing from a network's gossip
        // for 120 s). So the run's own containers (probes) go first, and the tasks'
        // containers are waited for, bounded.
        let settle = (limit / 4).min(Duration::from_secs(20));
        let settled = join_all(clients.iter().map(|(e, docker)| {
            let (deleted, filter) = (&deleted, &filter);
            async move {
                let (n, errors) = remove_run_containers(docker, filter).await;
                let waited = crate::wait::poll_until(settle, Duration::from_millis(200), || async {
                    match tasks_left(docker, deleted).await? {
                        0 => Ok(Some(())),
                        left => anyhow::bail!("{left} container(s) of the run's tasks still there"),
                    }
                })
                .await;
                if let Err(err) = waited {
                    tracing::warn!("{} leaves the swarm before the run's tasks are gone: {err:#}", e.node);
                }
                (n, errors)
            }
        }))
        .await;
        for (n, e) in settled {
            removed += n;
            errors.extend(e);
        }
        // Workers leave first, so the managers do not see them go down.
        let mut order: Vec<&(&Engine, Docker)> = clients.iter().collect();
        order.sort_by_key(|(e, _)| before.get(&e.node).is_some_and(|b| b.manager));
        for (e, docker) in order {
            match docker
                .leave_swarm(Some(LeaveSwarmOptionsBuilder::new().force(true).build()))
                .await
            {
                Ok(()) => {}
                // Never joined (the run stopped before the swarm formed).
                Err(err) if err.to_string().contains("not part of a swarm") => {}
                Err(err) => errors.push(format!("{} leaving the swarm: {err}", e.node)),
            }
        }
        let cleaned = join_all(clients.iter().map(|(e, docker)| {
            let before = before.get(&e.node).cloned().unwrap_or_default();
            let filter = &filter;
            async move {
                let removed = std::sync::atomic::AtomicUsize::new(0);
                // Half the bound: the rest is for the steps before and the report.
                let result = crate::wait::poll_until(limit / 2, Duration::from_millis(200), || async {
                    let (n, errors) = clean_engine(docker, filter, &before).await;
                    removed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    if errors.is_empty() {
                        Ok(Some(()))
                    } else {
                        Err(anyhow::anyhow!("{}", errors.join("; ")))
                    }
                })
                .await;
                (
                    removed.into_inner(),
                    result.err().map(|err| format!("{}: {err:#}", e.node)),
                )
            }
        }))
        .await;
        for (r, e) in cleaned {
            removed += r;
            errors.extend(e);
        }
        TeardownReport {
            detail: format!(
                "{removed} resource(s) the run made removed from {} engine(s), swarm left; the engines stay",
                clients.len()
            ),
            errors,
        }
    }
}

/// How many containers of the deleted services' tasks are still on an engine.
async fn tasks_left(docker: &Docker, services: &[String]) -> anyhow::Result<usize> {
    let task_filter = HashMap::from([("label".to_string(), vec![SERVICE_ID_LABEL.to_string()])]);
    let tasks = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&task_filter)
                .build(),
        ))
        .await?;
    Ok(tasks
        .iter()
        .filter(|c| {
            (c.labels.as_ref())
                .and_then(|l| l.get(SERVICE_ID_LABEL))
                .is_some_and(|id| services.contains(id))
        })
        .count())
}

/// The label the engine puts on a task's container: its service's ID.
const SERVICE_ID_LABEL: &str = "com.docker.swarm.service.id";

/// Removes the containers carrying the run's label; returns how many, and what could
/// not be removed (one already gone is no error).
async fn remove_run_containers(docker: &Docker, filter: &HashMap<String, Vec<String>>) -> (usize, Vec<String>) {
    let mut errors = Vec::new();
    let mut removed = 0;
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new().all(true).filters(filter).build(),
        ))
        .await
        .unwrap_or_default();
    for c in containers {
        let id = c.id.unwrap_or_default();
        let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        let r = docker.remove_container(&id, Some(opts)).await;
        match r {
            Ok(()) => removed += 1,
            _ if not_found(&r) => {}
            Err(err) => errors.push(format!("container {id}: {err}")),
        }
    }
    (removed, errors)
}

fn not_found(r: &Result<(), bollard::errors::Error>) -> bool {
    matches!(
        r,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
    )
}

/// One round of removing what the run made on one engine: containers and networks
/// carrying the run's label, `docker_gwbridge` and the test image if they were not there
/// before. Returns how many were removed and what could not be.
async fn clean_engine(docker: &Docker, filter: &HashMap<String, Vec<String>>, before: &Before) -> (usize, Vec<String>) {
    let (mut removed, mut errors) = remove_run_containers(docker, filter).await;
    let mut networks: Vec<String> = docker
        .list_networks(Some(ListNetworksOptionsBuilder::new().filters(filter).build()))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.name)
        .collect();
    if !before.had_gwbridge
        && let Ok(bridge) = docker.inspect_network(GWBRIDGE, None).await
    {
        // A swarm left while tasks were starting can keep its ingress sandbox's
        // endpoint (`gateway_ingress-sbox`) on the bridge until the engine restarts:
        // the swarm's own endpoints are let go by force, nothing else is.
        let swarm_endpoints = bridge
            .containers
            .unwrap_or_default()
            .into_values()
            .filter_map(|e| e.name)
            .filter(|n| n.starts_with("gateway_"));
        for endpoint in swarm_endpoints {
            // By endpoint name: the sandbox is no container the engine would find.
            let request = NetworkDisconnectRequest {
                container: endpoint.clone(),
                force: Some(true),
            };
            if let Err(err) = docker.disconnect_network(GWBRIDGE, request).await {
                tracing::debug!("disconnecting {endpoint} from {GWBRIDGE}: {err}");
            }
        }
        networks.push(GWBRIDGE.to_string());
    }
    for n in networks {
        let r = docker.remove_network(&n).await;
        match r {
            Ok(()) => removed += 1,
            _ if not_found(&r) => {}
            Err(err) => {
                // Name what still holds it: that is what to look at when it stays.
                let holders: Vec<String> = docker
                    .inspect_network(&n, None)
                    .await
                    .ok()
                    .and_then(|i| i.containers)
                    .map(|c| c.into_iter().map(|(id, e)| e.name.unwrap_or(id)).collect())
                    .unwrap_or_default();
                errors.push(format!("network {n} (attached: {}): {err}", holders.join(", ")));
            }
        }
    }
    if !before.had_test_image && docker.inspect_image(BUSYBOX_IMAGE).await.is_ok() {
        let opts = RemoveImageOptionsBuilder::new().force(true).build();
        match docker.remove_image(BUSYBOX_IMAGE, Some(opts), None).await {
            Ok(_) => removed += 1,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(err) => errors.push(format!("image {BUSYBOX_IMAGE}: {err}")),
        }
    }
    (removed, errors)
}
