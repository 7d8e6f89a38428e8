//! Compose stacks, deployed the way users deploy them: the real docker CLI
//! (`docker stack deploy`), the reference implementation of stacks (the Engine API has
//! none: a stack is networks, secrets, configs and services sharing the label
//! `com.docker.stack.namespace`). The CLI reaches a manager over the run's mutual TLS;
//! what it deployed is read back from the Engine API by that label.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;
use bollard::models::{Service, Task};
use bollard::query_parameters::{
    ListConfigsOptions, ListContainersOptionsBuilder, ListNetworksOptions, ListSecretsOptions,
    ListServicesOptionsBuilder, ListTasksOptionsBuilder, ListVolumesOptionsBuilder,
};
use secrecy::ExposeSecret;
use swarm_e2e_model::Stack;

use crate::cluster::Cluster;
use crate::exit::{self, Failure};
use crate::images::BUSYBOX_IMAGE;

/// The label every object of a stack carries (set by the CLI).
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// The variable a Compose file names the harness's busybox test image by
/// (`image: ${SWARM_E2E_TEST_IMAGE}`): it is on every node, no registry needed.
pub const TEST_IMAGE_VAR: &str = "SWARM_E2E_TEST_IMAGE";

/// The environment variable that picks the CLI (default: `docker` on `PATH`).
pub const CLI_VAR: &str = "SWARM_E2E_DOCKER_CLI";

/// How long `docker --version` and one `docker stack deploy` may take.
const VERSION_LIMIT: Duration = Duration::from_secs(10);

/// The docker CLI a run deploys stacks with.
#[derive(Debug, Clone)]
pub struct DockerCli {
    pub path: PathBuf,
    /// `docker --version`'s version (`28.2.2`, `20.10.24+dfsg1`).
    pub version: String,
}

/// Which docker CLI deploys a run's stacks (`--docker-cli`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CliChoice {
    /// `SWARM_E2E_DOCKER_CLI`, else `docker` on `PATH`.
    #[default]
    Host,
    /// The CLI that ships with the engine under test: copied out of the node image of
    /// the scenario's first manager's engine.
    Engine,
    /// The binary at this path.
    Path(PathBuf),
}

impl std::str::FromStr for CliChoice {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<CliChoice, Self::Err> {
        Ok(match s {
            "host" => CliChoice::Host,
            "engine" => CliChoice::Engine,
            path => CliChoice::Path(path.into()),
        })
    }
}

impl DockerCli {
    /// The CLI `choice` names, asked for its version. Exit 3 (before anything is
    /// created) when there is none, with how to get one.
    pub async fn choose(
        choice: &CliChoice,
        scenario: &swarm_e2e_model::Scenario,
        run_id: &str,
    ) -> Result<DockerCli, Failure> {
        match choice {
            CliChoice::Host => DockerCli::find().await,
            CliChoice::Path(path) => DockerCli::at(path.clone()).await,
            CliChoice::Engine => {
                let manager = scenario.nodes.iter().find(|n| n.role.as_str() == "manager");
                let engine = manager.or(scenario.nodes.first()).map_or("", |n| n.engine.as_str());
                let host = crate::engine::host_engine()?;
                let image = crate::images::resolve_node_image(&host, engine).await?;
                let path = crate::images::docker_cli::docker_cli_of(&host, &image, run_id).await?;
                DockerCli::at(path).await
            }
        }
    }

    /// `SWARM_E2E_DOCKER_CLI`, or `docker` on `PATH`; asked for its version. Exit 3
    /// (before anything is created) when there is none, with how to get one.
    pub async fn find() -> Result<DockerCli, Failure> {
        let path = match std::env::var_os(CLI_VAR) {
            Some(p) => PathBuf::from(p),
            None => on_path("docker").ok_or_else(|| {
                Failure::new(
                    exit::INFRASTRUCTURE,
                    "the scenario deploys stacks, and no docker CLI is on PATH (stacks are deployed by `docker \
                     stack deploy`, as users deploy them)",
                )
                .with_hint(format!(
                    "install one (Debian: `apt-get install docker.io`, or `docker-cli` where packaged), or point \
                     {CLI_VAR} at a docker binary"
                ))
            })?,
        };
        DockerCli::at(path).await
    }

    /// The CLI at `path`, asked for its version.
    pub async fn at(path: PathBuf) -> Result<DockerCli, Failure> {
        let out = tokio::time::timeout(
            VERSION_LIMIT,
            tokio::process::Command::new(&path)
                .arg("--version")
                .kill_on_drop(true)
                .output(),
        )
        .await;
        let unusable = |why: String| {
            Failure::new(
                exit::INFRASTRUCTURE,
                format!("the docker CLI {} cannot be used: {why}", path.display()),
            )
            .with_hint(format!("check the binary, or point {CLI_VAR} at another docker CLI"))
        };
        let out = match out {
            Err(_) => return Err(unusable(format!("`--version` did not answer within {VERSION_LIMIT:?}"))),
            Ok(Err(e)) => return Err(unusable(e.to_string())),
            Ok(Ok(o)) => o,
        };
        let text = String::from_utf8_lossy(&out.stdout);
        // "Docker version 28.2.2, build e6534b4"
        let version = text
            .trim()
            .strip_prefix("Docker version ")
            .and_then(|v| v.split(',').next())
            .map(str::to_string);
        match (out.status.success(), version) {
            (true, Some(version)) => Ok(DockerCli { path, version }),
            _ => Err(unusable(format!(
                "`--version` printed {:?}",
                text.trim().chars().take(200).collect::<String>()
            ))),
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// What one deploy did: how long the CLI took and what it said besides creating things
/// (ignored keys such as `build`, deprecated ones, notices).
#[derive(Debug, Clone)]
pub struct Deployed {
    pub stack: String,
    pub seconds: f64,
    pub messages: Vec<String>,
}

/// The client files the CLI needs (`DOCKER_CERT_PATH`), in the run's folder for as long
/// as the value lives: a private key does not outlast the deploys.
struct CertDir(PathBuf);

impl CertDir {
    fn write(run_id: &str, client: &crate::pki::CertBundle) -> anyhow::Result<CertDir> {
        let dir = crate::marks::run_dir(run_id).join("stack-cli");
        crate::pki::write_file(&dir.join("ca.pem"), &client.ca_pem, 0o644)?;
        crate::pki::write_file(&dir.join("cert.pem"), &client.cert_pem, 0o644)?;
        crate::pki::write_file(&dir.join("key.pem"), client.key_pem.expose_secret(), 0o600)?;
        Ok(CertDir(dir))
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // The run's folder, when nothing else (a kept run's certificates) is in it.
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Deploys every stack of the scenario through the first manager, one CLI process per
/// stack, concurrently. Returns what each did, or why it failed, by stack name.
pub async fn deploy_all(
    cli: &DockerCli,
    cluster: &Cluster,
    stacks: &[Stack],
    limit: Duration,
) -> Vec<(String, Result<Deployed, String>)> {
    if stacks.is_empty() {
        return Vec::new();
    }
    let manager = cluster.manager();
    let certs = match CertDir::write(&cluster.run_id, &manager.client) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            let why = format!("writing the CLI's client certificate files: {e:#}");
            return stacks.iter().map(|s| (s.name.clone(), Err(why.clone()))).collect();
        }
    };
    let deploys = stacks.iter().map(|s| {
        let certs = certs.clone();
        async move {
            let r = deploy(cli, &manager.cli_host, &certs.0, s, limit).await;
            (s.name.clone(), r.map_err(|e| format!("{e:#}")))
        }
    });
    futures_util::future::join_all(deploys).await
}

/// Deploys `stack` again with `extra` files merged over its own (an update), through
/// the first manager, bounded by `limit`.
pub async fn redeploy(
    cli: &DockerCli,
    cluster: &Cluster,
    stack: &Stack,
    extra: &[PathBuf],
    limit: Duration,
) -> anyhow::Result<Deployed> {
    let manager = cluster.manager();
    let certs = CertDir::write(&cluster.run_id, &manager.client)?;
    let mut updated = stack.clone();
    updated.files.extend(extra.iter().cloned());
    deploy(cli, &manager.cli_host, &certs.0, &updated, limit).await
}

/// `docker stack deploy --resolve-image MODE -c FILE… NAME`, bounded.
async fn deploy(cli: &DockerCli, host: &str, certs: &Path, stack: &Stack, limit: Duration) -> anyhow::Result<Deployed> {
    let started = Instant::now();
    let mut cmd = command(cli, host, certs);
    cmd.args(["stack", "deploy", "--resolve-image", stack.resolve_image.as_str()]);
    // Absolute: the CLI runs in the first file's folder (where the files' own relative
    // paths, `configs: file: ./x`, are resolved from).
    let files: Vec<PathBuf> = stack
        .files
        .iter()
        .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()))
        .collect();
    for f in &files {
        cmd.arg("-c").arg(f);
    }
    cmd.arg(&stack.name).env(TEST_IMAGE_VAR, BUSYBOX_IMAGE).envs(&stack.env);
    if let Some(dir) = files.first().and_then(|f| f.parent()) {
        cmd.current_dir(dir);
    }
    let messages = run_bounded(cli, cmd, &format!("docker stack deploy {}", stack.name), limit).await?;
    Ok(Deployed {
        stack: stack.name.clone(),
        seconds: started.elapsed().as_secs_f64(),
        messages,
    })
}

/// `docker stack rm NAME` through the first manager, bounded. The CLI returns once it
/// asked for every object's removal, before the swarm has removed the networks: what is
/// left is for the caller to wait on.
pub async fn remove(cli: &DockerCli, cluster: &Cluster, stack: &str, limit: Duration) -> anyhow::Result<Deployed> {
    let manager = cluster.manager();
    let certs = CertDir::write(&cluster.run_id, &manager.client)?;
    let started = Instant::now();
    let mut cmd = command(cli, &manager.cli_host, &certs.0);
    cmd.args(["stack", "rm", stack]);
    let messages = run_bounded(cli, cmd, &format!("docker stack rm {stack}"), limit).await?;
    Ok(Deployed {
        stack: stack.to_string(),
        seconds: started.elapsed().as_secs_f64(),
        messages,
    })
}

/// The CLI, talking to `host` over the run's mTLS and to nothing else.
fn command(cli: &DockerCli, host: &str, certs: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&cli.path);
    // The caller's own DOCKER_* settings (a context, another host) must not redirect the
    // command: only the run's manager, over the run's mTLS.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DOCKER_") && k != "DOCKER_CONFIG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("DOCKER_HOST", host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs)
        .kill_on_drop(true);
    cmd
}

/// Runs `cmd` to its end within `limit`; the lines it printed on stderr (warnings,
/// notices), or why it failed with the last of them.
async fn run_bounded(
    cli: &DockerCli,
    mut cmd: tokio::process::Command,
    what: &str,
    limit: Duration,
) -> anyhow::Result<Vec<String>> {
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("`{what}` did not end within {limit:?}"))?
        .with_context(|| format!("starting {}", cli.path.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let messages: Vec<String> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if !out.status.success() {
        anyhow::bail!(
            "`{what}` (docker {}) failed ({}): {}",
            cli.version,
            out.status,
            tail(&messages, 20)
        );
    }
    Ok(messages)
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How long building a stack's images (`build:`) may take, all of them.
pub const BUILD_LIMIT: Duration = Duration::from_secs(600);

/// Builds the `build:` services of `stacks` on the host engine (the docker CLI with the
/// caller's environment, the classic builder: no buildx needed), then copies every
/// image the stacks name (`images`, and what was built) from the host engine onto each
/// node that lacks it: saved once, loaded into those nodes at once. Returns a line per
/// image for the log, and why a stack cannot be deployed, by stack name.
pub async fn prepare_images(
    host: &Docker,
    cli: &DockerCli,
    cluster: &Cluster,
    stacks: &[Stack],
) -> (Vec<String>, HashMap<String, String>) {
    let mut notes = Vec::new();
    let mut failed: HashMap<String, String> = HashMap::new();
    let mut built: HashMap<String, Result<(), String>> = HashMap::new();
    for stack in stacks {
        for b in &stack.builds {
            let result = match built.get(&b.image) {
                Some(r) => r.clone(),
                None => {
                    let started = Instant::now();
                    let r = build(cli, b).await.map_err(|e| format!("{e:#}"));
                    if r.is_ok() {
                        notes.push(format!(
                            "  built {} (service {} of stack {}) on the host engine in {:.1} s",
                            b.image,
                            b.service,
                            stack.name,
                            started.elapsed().as_secs_f64()
                        ));
                    }
                    built.insert(b.image.clone(), r.clone());
                    r
                }
            };
            if let Err(e) = result {
                failed.entry(stack.name.clone()).or_insert(e);
            }
        }
    }
    let mut loaded: HashMap<String, Result<(), String>> = HashMap::new();
    for stack in stacks {
        if failed.contains_key(&stack.name) {
            continue;
        }
        let wanted = stack.images.iter().chain(stack.builds.iter().map(|b| &b.image));
        for image in wanted {
            if !loaded.contains_key(image) {
                let nodes: Vec<(&str, &Docker)> = cluster.nodes.iter().map(|n| (n.name.as_str(), &n.docker)).collect();
                let r = copy_to_nodes(host, &nodes, image, false).await;
                if let Ok(Some(line)) = &r {
                    notes.push(line.clone());
                }
                loaded.insert(image.clone(), r.map(|_| ()));
            }
            if let Some(Err(e)) = loaded.get(image) {
                failed.entry(stack.name.clone()).or_insert_with(|| e.clone());
            }
        }
    }
    (notes, failed)
}

/// `docker build -t IMAGE [-f FILE] [--build-arg K=V]… CONTEXT` on the host engine.
async fn build(cli: &DockerCli, b: &swarm_e2e_model::ComposeBuild) -> anyhow::Result<()> {
    let mut cmd = tokio::process::Command::new(&cli.path);
    cmd.args(["build", "-t", &b.image]);
    if let Some(f) = &b.dockerfile {
        cmd.arg("-f").arg(b.context.join(f));
    }
    for (k, v) in &b.args {
        cmd.arg("--build-arg").arg(format!("{k}={v}"));
    }
    cmd.arg(&b.context).env("DOCKER_BUILDKIT", "0").kill_on_drop(true);
    let out = tokio::time::timeout(BUILD_LIMIT, cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("building {} did not end within {BUILD_LIMIT:?}", b.image))?
        .with_context(|| format!("starting {}", cli.path.display()))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        anyhow::bail!(
            "building {} for service {} ({} on the host engine) failed: {}",
            b.image,
            b.service,
            b.context.display(),
            tail(&lines, 15)
        );
    }
    Ok(())
}

/// Copies `image` from the host engine onto the `nodes` (name, engine) that lack it; a
/// line for the log when it copied anything. `prepare_images` and `swarm-e2e load`
/// (`bar`: a byte bar on a terminal, heartbeat lines in CI). Saved once and streamed:
/// each chunk goes to every node's load as it arrives, so the image is never held
/// whole in memory and the slowest node sets the pace.
pub async fn copy_to_nodes(
    host: &Docker,
    nodes: &[(&str, &Docker)],
    image: &str,
    bar: bool,
) -> Result<Option<String>, String> {
    let size = match host.inspect_image(image).await {
        Ok(i) => i.size.and_then(|s| u64::try_from(s).ok()),
        Err(e) => {
            return Err(format!(
                "image {image} is not on the host engine ({e}): build or pull it there first (`docker images` lists \
                 what is), so it can be copied onto every node"
            ));
        }
    };
    let lacking: Vec<&(&str, &Docker)> = futures_util::future::join_all(
        nodes
            .iter()
            .map(|n| async move { n.1.inspect_image(image).await.is_err().then_some(n) }),
    )
    .await
    .into_iter()
    .flatten()
    .collect();
    if lacking.is_empty() {
        return Ok(None);
    }
    let started = Instant::now();
    let step =
        bar.then(|| crate::progress::LongStep::bytes(&format!("copying {image} onto {} node(s)", lacking.len()), size));
    // One bounded channel per node: its load reads the chunks the export sends it.
    let (mut senders, loads): (Vec<_>, Vec<_>) = lacking
        .iter()
        .map(|n| {
            let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
            let chunks = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
            let load = async move { (n.0, crate::images::load_image_stream(n.1, chunks).await) };
            (Some(tx), load)
        })
        .unzip();
    let pump = async move {
        use futures_util::StreamExt as _;
        let mut export = host.export_image(image);
        let mut saved = 0u64;
        while let Some(chunk) = export.next().await {
            let chunk = chunk.map_err(|e| format!("saving {image} from the host engine: {e}"))?;
            saved += chunk.len() as u64;
            if let Some(step) = &step {
                step.advance(chunk.len() as u64);
            }
            for tx in &mut senders {
                // A node whose load ended (failed) takes no more; the others go on.
                if let Some(t) = tx
                    && t.send(chunk.clone()).await.is_err()
                {
                    *tx = None;
                }
            }
        }
        Ok::<u64, String>(saved)
    };
    let (saved, results) = futures_util::future::join(pump, futures_util::future::join_all(loads)).await;
    let saved = saved?;
    let bad: Vec<String> = results
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e:#}")))
        .collect();
    if !bad.is_empty() {
        return Err(format!("image {image} could not be loaded onto {}", bad.join("; ")));
    }
    Ok(Some(format!(
        "  copied {image} ({:.1} MiB) from the host engine onto {} node(s) in {:.1} s",
        saved as f64 / (1024.0 * 1024.0),
        lacking.len(),
        started.elapsed().as_secs_f64()
    )))
}

/// The services of stack `name`, as the swarm has them (by the namespace label).
pub async fn services(docker: &Docker, name: &str) -> anyhow::Result<Vec<Service>> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{NAMESPACE_LABEL}={name}")])]);
    docker
        .list_services(Some(
            ListServicesOptionsBuilder::new().filters(&filters).status(true).build(),
        ))
        .await
        .with_context(|| format!("listing the services of stack {name}"))
}

/// Adds `var` (`KEY=VALUE`) to the environment of service `name`, as `docker service
/// update --env-add` does: its tasks are replaced.
pub async fn add_env(docker: &Docker, name: &str, var: &str) -> anyhow::Result<()> {
    let current = docker.inspect_service(name, None).await?;
    let version = current
        .version
        .and_then(|v| v.index)
        .context("service has no version")?;
    let mut spec = current.spec.context("service has no spec")?;
    let container = (spec.task_template.as_mut())
        .and_then(|t| t.container_spec.as_mut())
        .context("service has no container spec")?;
    container.env.get_or_insert_with(Vec::new).push(var.to_string());
    let options = bollard::query_parameters::UpdateServiceOptionsBuilder::new()
        .version(version as i32)
        .build();
    docker
        .update_service(name, spec, options, None)
        .await
        .with_context(|| format!("adding {var} to service {name}"))?;
    Ok(())
}

/// Every task of the service with ID `id`.
pub async fn tasks(docker: &Docker, id: &str) -> anyhow::Result<Vec<Task>> {
    let filters = HashMap::from([("service".to_string(), vec![id.to_string()])]);
    docker
        .list_tasks(Some(ListTasksOptionsBuilder::new().filters(&filters).build()))
        .await
        .context("listing tasks")
}

/// `web` of `app_web` in stack `app` (a service the file named `web`).
pub fn short_name<'a>(stack: &str, full: &'a str) -> &'a str {
    full.strip_prefix(stack)
        .and_then(|r| r.strip_prefix('_'))
        .unwrap_or(full)
}

/// What of a stack is still in the cluster after its removal.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// What `docker stack rm` removes and the swarm must then let go of, each a phrase.
    pub objects: Vec<String>,
    /// Nodes that could not be asked (their containers and networks are unknown): why.
    pub unasked: Vec<(String, String)>,
    /// Named volumes the stack's tasks created, which `docker stack rm` keeps by design
    /// (its data): `VOLUME on NODE`.
    pub volumes: Vec<String>,
}

/// What of stack `name` is still in the cluster: services, tasks of the services
/// `service_ids`, networks, secrets and configs by the namespace label on the manager;
/// on every node the containers, networks and volumes carrying it.
pub async fn leftovers(cluster: &Cluster, name: &str, service_ids: &[String]) -> anyhow::Result<Leftovers> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{NAMESPACE_LABEL}={name}")])]);
    let docker = &cluster.manager().docker;
    let mut left = Leftovers::default();
    for s in services(docker, name).await? {
        (left.objects).push(format!("service {}", s.spec.and_then(|x| x.name).unwrap_or_default()));
    }
    let tasks = (docker
        .list_tasks(None::<bollard::query_parameters::ListTasksOptions>)
        .await)
        .context("listing tasks")?;
    let tasks = tasks
        .iter()
        .filter(|t| t.service_id.as_ref().is_some_and(|id| service_ids.contains(id)))
        .count();
    if tasks > 0 {
        left.objects.push(format!("{tasks} task(s) of its services"));
    }
    let secrets = ListSecretsOptions {
        filters: Some(filters.clone()),
    };
    for s in docker.list_secrets(Some(secrets)).await.context("listing secrets")? {
        (left.objects).push(format!("secret {}", s.spec.and_then(|x| x.name).unwrap_or_default()));
    }
    let configs = ListConfigsOptions {
        filters: Some(filters.clone()),
    };
    for c in docker.list_configs(Some(configs)).await.context("listing configs")? {
        (left.objects).push(format!("config {}", c.spec.and_then(|x| x.name).unwrap_or_default()));
    }
    let on_nodes = cluster.nodes.iter().map(|node| on_node(node, filters.clone()));
    for (node, found) in cluster.nodes.iter().zip(futures_util::future::join_all(on_nodes).await) {
        match found {
            Ok((objects, volumes)) => {
                left.objects.extend(objects);
                left.volumes.extend(volumes);
            }
            Err(e) => left.unasked.push((node.name.clone(), format!("{e:#}"))),
        }
    }
    Ok(left)
}

/// The containers and networks (first) and the volumes (second) on `node` that match
/// `filters`.
async fn on_node(
    node: &crate::cluster::EngineNode,
    filters: HashMap<String, Vec<String>>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut left = Vec::new();
    let networks = ListNetworksOptions {
        filters: Some(filters.clone()),
    };
    for n in node.docker.list_networks(Some(networks)).await? {
        left.push(format!("network {} on {}", n.name.unwrap_or_default(), node.name));
    }
    let containers = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    for c in node.docker.list_containers(Some(containers)).await? {
        let name = (c.names.unwrap_or_default().first().cloned()).unwrap_or_default();
        let state = c.state.map(|s| s.to_string()).unwrap_or_default();
        left.push(format!(
            "container {} ({state}) on {}",
            name.trim_start_matches('/'),
            node.name
        ));
    }
    let volumes = ListVolumesOptionsBuilder::new().filters(&filters).build();
    let found = node.docker.list_volumes(Some(volumes)).await?;
    let volumes = (found.volumes.unwrap_or_default().into_iter())
        .map(|v| format!("{} on {}", v.name, node.name))
        .collect();
    Ok((left, volumes))
}
