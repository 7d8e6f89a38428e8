//! Node control for engines inside node containers on the host engine (local, and
//! do-fake's backed droplets): stop and start the inner engine, pause the container, and
//! say why a node is silent or gone.

use anyhow::Context;
use bollard::Docker;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use crate::engine::exec;
use crate::marks::{self, node_container_name};
use crate::targets::NodeControl;

/// Resolves when a node container of the run (one of `nodes`) has exited, with its exit
/// code and last log lines. Driven by the host engine's `die` events; containers that
/// died before the subscription are found by one look right after it.
pub(crate) async fn node_container_exited(host: &Docker, run_id: &str, nodes: &[String]) -> anyhow::Error {
    use bollard::query_parameters::EventsOptionsBuilder;
    let filters = std::collections::HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["die".to_string()]),
        ("label".to_string(), vec![format!("{}={run_id}", marks::RUN)]),
    ]);
    let mut events = host.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
    for node in nodes {
        if let Some(e) = exited(host, run_id, node).await {
            return e;
        }
    }
    while let Some(event) = events.next().await {
        let Ok(event) = event else { break };
        let node = event
            .actor
            .and_then(|a| a.attributes)
            .and_then(|a| a.get(marks::NODE).cloned());
        if let Some(node) = node.filter(|n| nodes.contains(n))
            && let Some(e) = exited(host, run_id, &node).await
        {
            return e;
        }
    }
    // The event stream ended (the engine went away): nothing more to say from here.
    std::future::pending().await
}

/// The reason a node container is gone, if it has exited.
async fn exited(host: &Docker, run_id: &str, node: &str) -> Option<anyhow::Error> {
    let name = node_container_name(run_id, node);
    let state = host.inspect_container(&name, None).await.ok()?.state?;
    if state.running == Some(true) {
        return None;
    }
    let code = state.exit_code.unwrap_or(-1);
    let log = container_log(host, name.clone()).await.unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(12).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Some(anyhow::anyhow!(
        "node {node} is gone: its container {name} exited with code {code}; its last log lines:\n    {}",
        tail.join("\n    ")
    ))
}

/// A container's own output (a node container's: its dockerd log), the last 2000 lines.
pub(crate) async fn container_log(host: &Docker, container: String) -> anyhow::Result<String> {
    let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).tail("2000").build();
    let mut stream = host.logs(&container, Some(opts));
    let mut out = String::new();
    while let Some(chunk) = stream.next().await {
        out.push_str(&chunk?.to_string());
    }
    Ok(out)
}

/// Stops and starts node engines inside node containers on the host engine (local, and
/// do-fake's backed droplets).
#[derive(Clone)]
pub struct ContainerNodeControl {
    pub host: Docker,
    pub run_id: String,
}

impl ContainerNodeControl {
    fn container(&self, node: &str) -> String {
        node_container_name(&self.run_id, node)
    }

    async fn node_exec(&self, node: &str, script: &str) -> anyhow::Result<()> {
        let (code, out) = exec(&self.host, &self.container(node), &["sh", "-c", script]).await?;
        if code != 0 {
            anyhow::bail!("exit {code}: {}", out.trim());
        }
        Ok(())
    }

    /// Stops the node's engine (SIGTERM, as a shutdown does) and waits until it is gone.
    /// The node container stays, so the node keeps its address, as a rebooted host does.
    async fn stop_engine(&self, node: &str) -> anyhow::Result<()> {
        self.node_exec(
            node,
            "touch /run/swarm-e2e/engine-stopped && kill -TERM \"$(cat /var/run/docker.pid)\" && \
             i=0; while [ -e /var/run/docker.pid ] && [ $i -lt 600 ]; do i=$((i+1)); sleep 0.05; done; \
             [ ! -e /var/run/docker.pid ]",
        )
        .await
        .with_context(|| format!("stopping the engine of node {node} (bounded: 30 s)"))
    }

    /// Starts the node's engine again (it answers some time later).
    async fn start_engine(&self, node: &str) -> anyhow::Result<()> {
        self.node_exec(node, "rm -f /run/swarm-e2e/engine-stopped")
            .await
            .with_context(|| format!("starting the engine of node {node}"))
    }
}

impl ContainerNodeControl {
    /// Why a node's engine cannot answer, when the host engine knows it for certain: its
    /// container exited or is paused, or its engine was stopped.
    async fn certainly_silent(&self, node: &str) -> Option<String> {
        if let Some(gone) = exited(&self.host, &self.run_id, node).await {
            return Some(format!("{gone:#}"));
        }
        let inspected = self.host.inspect_container(&self.container(node), None).await;
        if inspected.ok().and_then(|c| c.state).and_then(|s| s.paused) == Some(true) {
            return Some("its node container is paused: the engine accepts connections and cannot answer".into());
        }
        let stopped = self
            .node_exec(node, "[ -e /run/swarm-e2e/engine-stopped ]")
            .await
            .is_ok();
        if stopped {
            return Some("its engine was stopped (the node container runs)".into());
        }
        None
    }

    async fn silent_because(&self, node: &str) -> Option<String> {
        if let Some(certain) = self.certainly_silent(node).await {
            return Some(certain);
        }
        let log = container_log(&self.host, self.container(node)).await.ok()?;
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Some(format!(
            "its container runs, but its engine does not answer; its last log lines:\n    {}",
            tail.join("\n    ")
        ))
    }
}

impl NodeControl for ContainerNodeControl {
    fn why_silent<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(self.silent_because(node))
    }

    fn certain_silence<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(self.certainly_silent(node))
    }

    fn stop<'a>(&'a self, node: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.stop_engine(node))
    }

    fn start<'a>(&'a self, node: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.start_engine(node))
    }

    fn freeze<'a>(&'a self, node: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            (self.host.pause_container(&self.container(node)).await)
                .with_context(|| format!("pausing the node container of {node}"))
        })
    }
}
