//! Failure artefacts: what a person needs to understand a failed run after the cluster
//! is gone. Collected before teardown; a piece that cannot be collected is noted in
//! `errors.txt` instead of failing the collection.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bollard::query_parameters::{InspectNetworkOptions, ListContainersOptionsBuilder};
use swarm_e2e_model::{Scenario, Topology};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::report::RunSummary;
use crate::targets::Target;

/// Bound on one request for an artefact: a node that does not answer within it is
/// skipped from then on.
const REQUEST_LIMIT: Duration = Duration::from_secs(5);

/// Bound on the whole collection: teardown never waits longer for it.
pub const COLLECTION_LIMIT: Duration = Duration::from_secs(30);

/// Where artefacts go; shared by the per-node collectors, so what arrived before a bound
/// or an interrupt is kept.
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
}

/// One source's requests (a node's, or the swarm's through the manager), bounded each;
/// after the first that fails or does not answer, the rest are skipped and said so.
struct Source<'a> {
    sink: &'a Mutex<Sink>,
    name: String,
    failed: Option<String>,
}

/// Why one artefact could not be had.
enum Miss {
    /// The source answered with an error (a network a worker does not know): the
    /// source itself is fine.
    Answered(String),
    /// No answer: a connection error or the bound; the source is skipped from then on.
    Silent(String),
}

impl Source<'_> {
    /// An Engine API request; its JSON answer is the artefact.
    async fn take<T, F>(&mut self, rel: &str, request: F)
    where
        T: serde::Serialize,
        F: std::future::Future<Output = Result<T, bollard::errors::Error>>,
    {
        self.take_text(rel, async {
            match request.await {
                Ok(v) => Ok(serde_json::to_string_pretty(&v).unwrap_or_else(|e| format!("unserializable: {e}"))),
                Err(e @ bollard::errors::Error::DockerResponseServerError { .. }) => Err(Miss::Answered(e.to_string())),
                Err(e) => Err(Miss::Silent(e.to_string())),
            }
        })
        .await
    }

    async fn take_text<F>(&mut self, rel: &str, request: F)
    where
        F: std::future::Future<Output = Result<String, Miss>>,
    {
        if let Some(first) = &self.failed {
            let line = format!("{rel}: skipped: {} did not answer before ({first})", self.name);
            self.sink.lock().expect("sink").errors.push(line);
            return;
        }
        let got = match tokio::time::timeout(REQUEST_LIMIT, request).await {
            Ok(r) => r,
            Err(_) => Err(Miss::Silent(format!("no answer within {} s", REQUEST_LIMIT.as_secs()))),
        };
        let mut sink = self.sink.lock().expect("sink");
        match got {
            Ok(body) => sink.put(rel, &body),
            Err(Miss::Answered(e)) => sink.errors.push(format!("{rel}: {e}")),
            Err(Miss::Silent(e)) => {
                sink.errors.push(format!("{rel}: {e}"));
                self.failed = Some(rel.to_string());
            }
        }
    }
}

/// Collects artefacts of a failed run into `dir/<run-id>/` and returns that path. Every
/// node at once, each request bounded by `REQUEST_LIMIT`, the whole by `limit`; `stop`
/// (an interrupt) ends it early. What could not be collected is listed in `errors.txt`.
pub async fn collect(
    target: &dyn Target,
    scenario: &Scenario,
    summary: &RunSummary,
    cluster: Option<&Cluster>,
    dir: &Path,
    limit: Duration,
    stop: &CancellationToken,
) -> PathBuf {
    let root = dir.join(&summary.run_id);
    let sink = Mutex::new(Sink {
        root: root.clone(),
        errors: Vec::new(),
    });
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
    sink.lock().expect("sink").put("summary.txt", &text);

    let sink = &sink;
    let nodes = scenario.nodes.iter().map(|node| async move {
        let mut source = Source {
            sink,
            name: node.name.clone(),
            failed: None,
        };
        // The node's own engine, where it answered: some targets read logs through it.
        let engine = cluster
            .and_then(|c| c.nodes.iter().find(|n| n.name == node.name))
            .map(|n| &n.docker);
        let log = target.node_log(&summary.run_id, &node.name, engine);
        // Read through the target (the host's engine for node containers): its failure
        // says nothing about the node's own engine.
        let log = async { log.await.map_err(|e| Miss::Answered(format!("{e:#}"))) };
        source.take_text(&format!("{}/engine.log", node.name), log).await;
        if let Some(boot) = target.boot_log(&summary.run_id, &node.name, engine) {
            let boot = async { boot.await.map_err(|e| Miss::Answered(format!("{e:#}"))) };
            source
                .take_text(&format!("{}/cloud-init-output.log", node.name), boot)
                .await;
        }
        let Some(n) = cluster.and_then(|c| c.nodes.iter().find(|n| n.name == node.name)) else {
            return;
        };
        source.take(&format!("{}/info.json", n.name), n.docker.info()).await;
        let all = ListContainersOptionsBuilder::new().all(true).build();
        let listed = n.docker.list_containers(Some(all));
        source.take(&format!("{}/containers.json", n.name), listed).await;
        for net in &scenario.networks {
            let inspected = n.docker.inspect_network(&net.name, None::<InspectNetworkOptions>);
            source
                .take(&format!("{}/network-{}.json", n.name, net.name), inspected)
                .await;
        }
    });
    let swarm = async move {
        let Some(cluster) = cluster else { return };
        if scenario.topology == Topology::Classic {
            return;
        }
        let manager = cluster.manager();
        let mut source = Source {
            sink,
            name: format!("the manager {}", manager.name),
            failed: None,
        };
        source.take("swarm/nodes.json", manager.docker.list_nodes(None)).await;
        source
            .take("swarm/services.json", manager.docker.list_services(None))
            .await;
        source.take("swarm/tasks.json", manager.docker.list_tasks(None)).await;
    };
    let all = futures_util::future::join(futures_util::future::join_all(nodes), swarm);
    tokio::select! {
        done = tokio::time::timeout(limit, all) => {
            if done.is_err() {
                let line = format!("collection stopped after {} s, its bound: what is missing here did not arrive", limit.as_secs());
                sink.lock().expect("sink").errors.push(line);
            }
        }
        _ = stop.cancelled() => {
            sink.lock().expect("sink").errors.push("collection stopped: interrupted".into());
        }
    }
    let mut sink = sink.lock().expect("sink");
    if !sink.errors.is_empty() {
        let errors = sink.errors.join("\n");
        sink.put("errors.txt", &errors);
    }
    root
}
