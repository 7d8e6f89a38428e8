//! The phases from provisioning to the checks, each a function of the run context:
//! bounded by `[timeouts]`, interruptible, reported as events. Provisioning runs as a
//! task so an interrupt lets in-flight creations land (and be torn down) instead of
//! abandoning them half-made.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use futures_util::future::try_join_all;
use swarm_e2e_model::Topology;
use tokio_util::sync::CancellationToken;

use super::bounded::{AbortOnDrop, PhaseError, bounded, finish_phase, start_phase};
use super::{RunContext, checks};
use crate::cluster::{Cluster, EngineNode, form};
use crate::engine::{ServerIdentity, tls_engine, wait_ready};
use crate::exit::Failure;
use crate::images::{busybox_image_tarball, load_image};
use crate::pki::Pki;
use crate::report::{CheckOutcome, Event, NodeRecord, Phase};
use crate::targets::{FaultMoment, Identity, NodeFault, ProvisionContext, ProvisionedNode};

/// How long a stopped provisioning may take to land what it already sent.
pub(crate) const PROVISION_GRACE: Duration = Duration::from_secs(30);

/// Provision, engines ready, cluster formed, checks. Returns the checks' exit code.
pub(super) fn provision_to_checks(ctx: &mut RunContext) -> Result<i32, Failure> {
    let pki = Arc::new(Pki::new(ctx.run_id())?);
    let provisioned = provision(ctx, &pki)?;
    inject_panic(ctx, Phase::Provision);
    if let Some(reason) = ctx.target.without_engines() {
        ctx.summary.nodes = provisioned
            .iter()
            .map(|n| node_record(ctx, &n.name, &n.address.to_string(), "not started (--no-engines)"))
            .collect();
        return Ok(checks::skip_phase(ctx, CheckOutcome::Ignored, reason));
    }
    let (nodes, mut images_loaded) = engines_ready(ctx, provisioned)?;
    inject_panic(ctx, Phase::EnginesReady);
    let cluster = cluster_formed(ctx, nodes, &mut images_loaded)?;
    inject_panic(ctx, Phase::ClusterFormed);
    checks::run(ctx, cluster, images_loaded)
}

/// Test hook: panics in `phase` when the run was asked to (`--inject-panic`).
fn inject_panic(ctx: &RunContext, phase: Phase) {
    if ctx.opts.panic_in == Some(phase) {
        panic!("injected panic in phase {}", phase.as_str());
    }
}

fn node_record(ctx: &RunContext, name: &str, address: &str, engine_version: &str) -> NodeRecord {
    match ctx.scenario.node(name) {
        Some(declared) => NodeRecord::declared(declared, address, engine_version),
        None => NodeRecord {
            name: name.to_string(),
            role: "worker".into(),
            address: address.to_string(),
            engine_version: engine_version.to_string(),
            labels: Default::default(),
            engine_labels: Default::default(),
        },
    }
}

/// Phase: provision, as a task of the target's.
fn provision(ctx: &mut RunContext, pki: &Arc<Pki>) -> Result<Vec<ProvisionedNode>, Failure> {
    let started = start_phase(ctx, Phase::Provision);
    let stop = CancellationToken::new();
    let limit = ctx.scenario.timeouts.provision;
    let mut task = ctx.rt.spawn(ctx.target.clone().provision(ProvisionContext {
        scenario: ctx.scenario.clone(),
        run_id: ctx.run_id().to_string(),
        pki: pki.clone(),
        keep: ctx.opts.keep,
        stop: stop.clone(),
        broken_engines: ctx.opts.nodes_with(&NodeFault::BadEngineOption),
    }));
    let abort = task.abort_handle();
    let (target, interrupt) = (ctx.target.clone(), ctx.interrupt);
    let (joined, ended) = ctx.rt.block_on(async {
        let ended = tokio::select! {
            r = &mut task => return (Some(r), None),
            _ = tokio::time::sleep(limit) => PhaseError::Timeout(limit),
            _ = interrupt.stop.cancelled() => PhaseError::Interrupted,
            e = target.provision_failed() => PhaseError::Failed(e),
        };
        // Stop starting new work and let what is in flight land, so teardown sees it; a
        // second signal (or a stuck engine) cuts this short.
        stop.cancel();
        tokio::select! {
            r = &mut task => (Some(r), Some(ended)),
            _ = tokio::time::sleep(PROVISION_GRACE) => { abort.abort(); (None, Some(ended)) }
            _ = interrupt.hurry.cancelled() => { abort.abort(); (None, Some(ended)) }
        }
    });
    let result = match (joined, ended) {
        (_, Some(ended)) => Err(ended),
        (Some(Ok(Ok(nodes))), None) => Ok(nodes),
        (Some(Ok(Err(e))), None) => Err(PhaseError::Failed(e)),
        (Some(Err(join)), None) if join.is_panic() => Err(PhaseError::Failed(anyhow::anyhow!("provisioning panicked"))),
        (_, None) => Err(PhaseError::Interrupted),
    };
    let target = ctx.target.clone();
    finish_phase(ctx, Phase::Provision, started, result, |n| target.provisioned(n))
}

/// Phase: engines ready (mutual TLS `/_ping` on every node). The busybox test image is
/// prepared meanwhile and loaded into every node while the swarm forms (only workloads
/// need it); the returned task ends when it is loaded.
fn engines_ready(
    ctx: &mut RunContext,
    provisioned: Vec<ProvisionedNode>,
) -> Result<(Vec<EngineNode>, AbortOnDrop<anyhow::Result<()>>), Failure> {
    let started = start_phase(ctx, Phase::EnginesReady);
    let source = ctx.target.image_source().cloned();
    let busybox = ctx.rt.spawn(async move {
        let host = source.context("this target has no engine to build the test images on")?;
        busybox_image_tarball(&host).await
    });
    let limit = ctx.scenario.timeouts.engines_ready;
    let (scenario, reporter) = (ctx.scenario.clone(), ctx.reporter.clone());
    let names: Vec<String> = provisioned.iter().map(|p| p.name.clone()).collect();
    let gone = ctx.target.node_exited(ctx.run_id(), &names);
    let result = ctx.rt.block_on(bounded(
        limit,
        &ctx.interrupt.stop,
        unless_gone(gone, async {
            try_join_all(provisioned.iter().map(|p| {
                let (scenario, reporter) = (&scenario, &reporter);
                async move {
                    let identity = match &p.identity {
                        Identity::Address => ServerIdentity::Address,
                        Identity::Name(name) => ServerIdentity::Name(name),
                    };
                    let docker = tls_engine(SocketAddr::new(p.address, p.port), &p.client, identity)?;
                    let waited = wait_ready(&docker, limit)
                        .await
                        .with_context(|| format!("node {} ({}:{})", p.name, p.address, p.port))?;
                    let version = docker.version().await?.version.unwrap_or_default();
                    reporter.event(&Event::NodeReady {
                        node: p.name.clone(),
                        address: p.address.to_string(),
                        engine_version: version.clone(),
                        elapsed: waited,
                    });
                    let declared = scenario.node(&p.name).expect("provisioned from the scenario");
                    anyhow::Ok(EngineNode {
                        name: p.name.clone(),
                        role: declared.role,
                        address: p.address,
                        docker,
                        engine_version: version,
                        node_id: String::new(),
                        cli_host: p.cli_host.clone(),
                        client: p.client.clone(),
                    })
                }
            }))
            .await
        }),
    ));
    let nodes = finish_phase(ctx, Phase::EnginesReady, started, result, |n| {
        format!("{} engine(s) answering over mTLS", n.len())
    })?;
    let engines: Vec<(String, Docker)> = nodes.iter().map(|n| (n.name.clone(), n.docker.clone())).collect();
    let images_loaded = AbortOnDrop(ctx.rt.spawn(async move {
        let tarball = busybox.await.context("preparing the busybox image")??;
        try_join_all(engines.iter().map(|(name, docker)| {
            let tarball = tarball.clone();
            async move {
                match load_image(docker, tarball).await {
                    Ok(()) => Ok(()),
                    // A node that died after the engines answered is a finding of the
                    // checks (they name it), not a harness failure: a crashed engine is
                    // what a release engineer runs this to see.
                    Err(e) if !crate::cluster::answers_ping(docker).await => {
                        tracing::warn!("node {name} stopped answering while busybox was loaded: {e:#}");
                        Ok(())
                    }
                    Err(e) => Err(e).with_context(|| format!("loading busybox into {name}")),
                }
            }
        }))
        .await?;
        Ok(())
    }));
    ctx.summary.nodes = nodes
        .iter()
        .map(|n| node_record(ctx, &n.name, &n.address.to_string(), &n.engine_version))
        .collect();
    Ok((nodes, images_loaded))
}

/// Phase: cluster formed (a swarm, or engines sharing a cluster store).
fn cluster_formed(
    ctx: &mut RunContext,
    nodes: Vec<EngineNode>,
    images_loaded: &mut AbortOnDrop<anyhow::Result<()>>,
) -> Result<Arc<Cluster>, Failure> {
    let started = start_phase(ctx, Phase::ClusterFormed);
    let limit = ctx.scenario.timeouts.cluster_formed;
    let scenario = ctx.scenario.clone();
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let gone = ctx.target.node_exited(ctx.run_id(), &names);
    let faults: Vec<_> = ctx
        .opts
        .faults
        .iter()
        .filter(|f| f.fault.moment() == FaultMoment::BeforeFormation)
        .cloned()
        .collect();
    let run_id = ctx.run_id().to_string();
    // Formation bounds its own steps a little inside `limit` and says which one ran
    // out; this bound is the phase's promise (and catches a request that never returns).
    let result = ctx.rt.block_on(bounded(
        limit,
        &ctx.interrupt.stop,
        unless_gone(gone, async {
            if !faults.is_empty() {
                // Test hook: a fault made through the node's engine needs the test image.
                (&mut images_loaded.0).await.context("loading the test images")??;
                *images_loaded = AbortOnDrop(tokio::spawn(async { Ok(()) }));
                for f in &faults {
                    let node = nodes.iter().find(|n| n.name == f.node).context("no such node")?;
                    f.inject_underlay(node, &run_id).await?;
                }
            }
            form(&scenario, &run_id, nodes, limit).await
        }),
    ));
    let cluster = finish_phase(ctx, Phase::ClusterFormed, started, result, |c| {
        match scenario.topology {
            Topology::Swarm => format!(
                "swarm of {} node(s), {} manager(s), {} overlay network(s)",
                c.nodes.len(),
                scenario.manager_count(),
                scenario.networks.len()
            ),
            Topology::Classic => format!(
                "{} engine(s) sharing a cluster store (etcd), {} global overlay network(s)",
                c.nodes.len(),
                scenario.networks.len()
            ),
        }
    })?;
    let cluster = Arc::new(cluster);
    ctx.cluster = Some(cluster.clone());
    Ok(cluster)
}

/// `fut`, unless a node is gone for good first: then the phase fails at once with why.
async fn unless_gone<T>(
    gone: futures_util::future::BoxFuture<'_, anyhow::Error>,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = fut => r,
        e = gone => Err(e),
    }
}
