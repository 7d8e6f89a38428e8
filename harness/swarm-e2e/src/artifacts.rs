//! Failure artefacts: what a person needs to understand a failed run after the cluster
//! is gone. Collected before teardown; a piece that cannot be collected is noted in
//! `errors.txt` instead of failing the collection.

use std::path::{Path, PathBuf};

use bollard::query_parameters::{InspectNetworkOptions, ListContainersOptionsBuilder};
use swarm_e2e_model::Scenario;

use crate::cluster::Cluster;
use crate::report::RunSummary;
use crate::target::Target;

struct Sink {
    root: PathBuf,
    errors: Vec<String>,
}

impl Sink {
    fn put(&mut self, rel: &str, body: &str) {
        let path = self.root.join(rel);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(&path, body) {
            self.errors.push(format!("{rel}: {e}"));
        }
    }

    fn json<T: serde::Serialize>(&mut self, rel: &str, what: Result<T, impl std::fmt::Display>) {
        match what {
            Ok(v) => {
                let body = serde_json::to_string_pretty(&v).unwrap_or_else(|e| format!("unserializable: {e}"));
                self.put(rel, &body);
            }
            Err(e) => self.errors.push(format!("{rel}: {e}")),
        }
    }
}

/// Collects artefacts of a failed run into `dir/<run-id>/` and returns that path.
pub async fn collect(
    target: &dyn Target,
    scenario: &Scenario,
    summary: &RunSummary,
    cluster: Option<&Cluster>,
    dir: &Path,
) -> PathBuf {
    let root = dir.join(&summary.run_id);
    let mut sink = Sink {
        root: root.clone(),
        errors: Vec::new(),
    };
    let mut text = format!(
        "run {} of scenario {} ({}), exit code {}\n",
        summary.run_id, scenario.name, scenario.source, summary.exit_code
    );
    if let Some(e) = &summary.error {
        text.push_str(&format!("error: {e}\n"));
    }
    for c in &summary.checks {
        text.push_str(&format!(
            "\n[{}] {} ({}, {:.2}s)\n",
            c.outcome,
            c.name,
            c.kind,
            c.duration.as_secs_f64()
        ));
        if let Some(m) = &c.message {
            text.push_str(m);
            text.push('\n');
        }
    }
    sink.put("summary.txt", &text);

    for node in &scenario.nodes {
        match target.node_log(&summary.run_id, &node.name).await {
            Ok(l) => sink.put(&format!("{}/engine.log", node.name), &l),
            Err(e) => sink.errors.push(format!("{}/engine.log: {e}", node.name)),
        }
    }
    if let Some(cluster) = cluster {
        for n in &cluster.nodes {
            sink.json(&format!("{}/info.json", n.name), n.docker.info().await);
            sink.json(
                &format!("{}/containers.json", n.name),
                n.docker
                    .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
                    .await,
            );
            for net in &scenario.networks {
                sink.json(
                    &format!("{}/network-{}.json", n.name, net.name),
                    n.docker.inspect_network(&net.name, None::<InspectNetworkOptions>).await,
                );
            }
        }
        let manager = &cluster.manager().docker;
        sink.json("swarm/nodes.json", manager.list_nodes(None).await);
        sink.json("swarm/services.json", manager.list_services(None).await);
        sink.json("swarm/tasks.json", manager.list_tasks(None).await);
    }
    if !sink.errors.is_empty() {
        let errors = sink.errors.join("\n");
        sink.put("errors.txt", &errors);
    }
    root
}
