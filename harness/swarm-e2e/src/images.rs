//! Images without a registry.
//!
//! * Node images: a Debian root filesystem made by debootstrap with the distribution's
//!   `docker.io`, imported into the host engine and tagged by engine version. The Debian
//!   suite decides the engine version.
//! * Static-binaries node images: a release candidate's `docker/dockerd`, `docker/containerd`,
//!   `docker/runc`, ... (the layout of Docker's static release archives) copied onto a
//!   Debian base without an engine, tagged by the version `dockerd --version` reports.
//! * The busybox test image: Debian's `busybox-static` binary and its applet links,
//!   imported once into the host engine, then saved and loaded into every node so the
//!   image ID is the same everywhere.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::query_parameters::{CreateImageOptionsBuilder, ImportImageOptionsBuilder};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

/// Bumped whenever the node image recipe changes, so cached images are rebuilt.
pub const NODE_IMAGE_RECIPE: &str = "5";
pub const NODE_IMAGE_REPO: &str = "swarm-e2e/node";
pub const BUSYBOX_IMAGE: &str = "swarm-e2e/busybox:local";
const NODE_INIT: &str = include_str!("../../../fixtures/node-image/swarm-e2e-node-init");
/// `systemctl` for boot scripts, in containers without systemd (fake droplets).
const SYSTEMCTL: &str = include_str!("../../../fixtures/node-image/swarm-e2e-systemctl");
/// What every node image has besides its engine (curl: a droplet's boot script fetches
/// with it, as on DigitalOcean's images).
const BASE_PACKAGES: &str = "iproute2,iptables,procps,ca-certificates,hostname,curl";
/// Libraries engines built against Debian need when they come as loose binaries
/// (a static release archive needs none of them).
const STATIC_BASE_EXTRA: &str = "libdevmapper1.02.1,libseccomp2,libsystemd0";
/// The base of static-binaries images: no engine, and the suite of the oldest engine.
pub const NODE_BASE_REPO: &str = "swarm-e2e/node-base";
const STATIC_BASE_SUITE: &str = "bookworm";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// An engine release we can build a node image for, and the Debian suite that ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineRelease {
    pub engine: &'static str,
    pub suite: &'static str,
    pub debian: &'static str,
    /// Packages beyond the engine: the classic topology's key-value store (etcd, with
    /// its v2 API) where the engine still has `--cluster-store`.
    pub extra_packages: &'static str,
}

pub const ENGINE_RELEASES: &[EngineRelease] = &[
    EngineRelease {
        engine: "20.10",
        suite: "bookworm",
        debian: "Debian 12",
        extra_packages: "etcd-server",
    },
    EngineRelease {
        engine: "26.1",
        suite: "trixie",
        debian: "Debian 13",
        extra_packages: "",
    },
    EngineRelease {
        engine: "28.5",
        suite: "sid",
        debian: "Debian unstable",
        extra_packages: "",
    },
];

pub fn release_for(engine: &str) -> anyhow::Result<EngineRelease> {
    let wanted: String = engine.split('.').take(2).collect::<Vec<_>>().join(".");
    ENGINE_RELEASES
        .iter()
        .copied()
        .find(|r| r.engine == wanted)
        .with_context(|| {
            let known: Vec<String> = ENGINE_RELEASES
                .iter()
                .map(|r| format!("{} ({})", r.engine, r.debian))
                .collect();
            format!(
                "no local node image recipe for engine {engine}\nhint: locally available engines are {}",
                known.join(", ")
            )
        })
}

pub fn node_image_tag(engine: &str) -> String {
    format!("{NODE_IMAGE_REPO}:{engine}")
}

/// What a node image records about itself (from image labels).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeImageInfo {
    pub tag: String,
    pub id: String,
    /// `packaged` (a Debian suite's docker.io) or `static` (loose engine binaries).
    pub kind: String,
    pub engine_package: String,
    pub containerd_package: String,
    pub runc_package: String,
    /// The Debian suite (packaged), or where the binaries came from (static).
    pub suite: String,
    pub size_bytes: i64,
}

/// The node image tagged exactly `swarm-e2e/node:<tag>`, if one of the current recipe
/// exists.
pub async fn find_node_image(host: &Docker, tag: &str) -> anyhow::Result<Option<NodeImageInfo>> {
    let tag = node_image_tag(tag);
    let image = match host.inspect_image(&tag).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(None),
        Err(e) => return Err(e).context("inspecting the node image"),
    };
    let labels: HashMap<String, String> = image.config.and_then(|c| c.labels).unwrap_or_default();
    if labels.get("swarm-e2e.recipe").map(String::as_str) != Some(NODE_IMAGE_RECIPE) {
        return Ok(None);
    }
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    Ok(Some(NodeImageInfo {
        tag,
        id: image.id.unwrap_or_default(),
        kind: labels
            .get("swarm-e2e.kind")
            .cloned()
            .unwrap_or_else(|| "packaged".into()),
        engine_package: get("swarm-e2e.engine-package"),
        containerd_package: get("swarm-e2e.containerd-package"),
        runc_package: get("swarm-e2e.runc-package"),
        suite: get("swarm-e2e.suite"),
        size_bytes: image.size.unwrap_or_default(),
    }))
}

/// The node image a scenario's `engine` names: an image tagged exactly so (a
/// static-binaries build, e.g. `27.0.0-rc.1`) wins; otherwise the packaged release of
/// its MAJOR.MINOR (`20.10.24` -> the Debian 12 image). Fails with the build command.
pub async fn resolve_node_image(host: &Docker, engine: &str) -> anyhow::Result<NodeImageInfo> {
    if engine.contains('/') {
        // Where a static engine archive is: the image built from it records that.
        let found = list_node_images(host).await?;
        return found
            .into_iter()
            .find(|i| i.kind == "static" && i.suite == engine)
            .with_context(|| {
                format!(
                    "no node image was built from {engine}\nhint: run `swarm-e2e node-image build --static {engine}` (once)"
                )
            });
    }
    if let Some(found) = find_node_image(host, engine).await? {
        return Ok(found);
    }
    let release = match release_for(engine) {
        Ok(r) => r,
        Err(e) => {
            return Err(e.context(format!(
                "no node image for engine {engine}\nhint: build one from a release candidate's static binaries: \
                 `swarm-e2e node-image build --static PATH-OR-URL --engine {engine}`"
            )));
        }
    };
    find_node_image(host, release.engine).await?.with_context(|| {
        format!(
            "the node image {} is not built yet\nhint: run `swarm-e2e node-image build --engine {}` (about a minute, once)",
            node_image_tag(release.engine),
            release.engine
        )
    })
}

/// The node image for `engine`, built first when it is missing and this binary can build
/// it: a packaged release (debootstrap), or a static archive's path or URL. A static
/// image's version name (27.0.0-rc.1) says nothing about where its binaries are, so
/// that one is still refused with the hint.
pub async fn ensure_node_image(
    host: &Docker,
    engine: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<NodeImageInfo> {
    match resolve_node_image(host, engine).await {
        Ok(found) => Ok(found),
        Err(_) if engine.contains('/') => {
            progress(&format!("no node image from {engine} yet: building it"));
            build_static_node_image(host, engine, None, progress).await
        }
        Err(missing) => match release_for(engine) {
            Ok(release) if find_node_image(host, release.engine).await?.is_none() => {
                progress(&format!("no node image for engine {} yet: building it", release.engine));
                build_node_image(host, release.engine, false, progress).await
            }
            _ => Err(missing),
        },
    }
}

/// Builds the node image for `engine` unless a current one is cached (then a no-op).
/// `progress` receives one line per step.
pub async fn build_node_image(
    host: &Docker,
    engine: &str,
    force: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<NodeImageInfo> {
    let release = release_for(engine)?;
    if !force && let Some(info) = find_node_image(host, release.engine).await? {
        progress(&format!(
            "{} is cached ({}), nothing to do",
            info.tag, info.engine_package
        ));
        return Ok(info);
    }
    let mut packages = format!("docker.io,{BASE_PACKAGES}");
    if !release.extra_packages.is_empty() {
        packages = format!("{packages},{}", release.extra_packages);
    }
    let (_work, rootfs) = debootstrap(release.suite, release.debian, &packages, progress).await?;
    let status = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status")).context("reading dpkg status")?;
    let versions = package_versions(&status, &["docker.io", "containerd", "runc"]);
    let engine_package = versions
        .get("docker.io")
        .cloned()
        .context("docker.io is not installed in the rootfs")?;
    let labels = [
        ("kind", "packaged".to_string()),
        ("suite", release.suite.to_string()),
        ("engine-package", engine_package.clone()),
        (
            "containerd-package",
            versions.get("containerd").cloned().unwrap_or_default(),
        ),
        ("runc-package", versions.get("runc").cloned().unwrap_or_default()),
    ];
    progress(&format!(
        "importing {} (engine {engine_package}) into the host engine",
        node_image_tag(release.engine)
    ));
    import_rootfs(host, &rootfs, NODE_IMAGE_REPO, release.engine, &labels, progress).await?;
    find_node_image(host, release.engine)
        .await?
        .context("the node image is missing right after import")
}

/// A Debian root filesystem by debootstrap, with the node init installed; the temporary
/// directory holding it goes away with the returned guard.
async fn debootstrap(
    suite: &str,
    debian: &str,
    packages: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf)> {
    for tool in ["debootstrap", "tar"] {
        if which(tool).is_none() {
            bail!("`{tool}` is not installed\nhint: apt-get install -y debootstrap tar");
        }
    }
    let mirror = std::env::var("SWARM_E2E_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.into());
    let work = tempfile::Builder::new()
        .prefix("swarm-e2e-node-image-")
        .tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into()))
        .context("creating a build directory")?;
    let rootfs = work.path().join("rootfs");
    let started = Instant::now();
    progress(&format!("debootstrap {suite} ({debian}) with {packages} from {mirror}"));
    let mut child = tokio::process::Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={packages}"), suite])
        .arg(&rootfs)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running debootstrap")?;
    // About two minutes with no output of ours otherwise: its `I: …` lines become the
    // spinner's text on a terminal, the heartbeat's in a CI log.
    let step = crate::progress::LongStep::spinner(&format!("debootstrap {suite}"));
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().expect("piped stdout")));
    let mut log = Vec::new();
    while let Some(line) = lines.next_line().await.context("reading debootstrap's output")? {
        if let Some(status) = line.strip_prefix("I: ") {
            step.status(status);
        }
        log.push(line);
    }
    let status = child.wait().await.context("running debootstrap")?;
    drop(step);
    if !status.success() {
        let tail = log[log.len().saturating_sub(15)..].join("\n");
        bail!(
            "debootstrap failed ({status}):\n{tail}\n{}\nhint: debootstrap needs root and a reachable Debian mirror (set SWARM_E2E_DEBIAN_MIRROR)",
            errors.await.unwrap_or_default()
        );
    }
    progress(&format!("debootstrap done in {:.1}s", started.elapsed().as_secs_f64()));
    install_init(&rootfs)?;
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let _ = clean_dir(&rootfs.join(dir));
    }
    Ok((work, rootfs))
}

/// `docker import` of a root filesystem as `repo:tag`, with the node entrypoint and
/// `swarm-e2e.*` labels (the recipe among them).
async fn import_rootfs(
    host: &Docker,
    rootfs: &Path,
    repo: &str,
    tag: &str,
    labels: &[(&str, String)],
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<()> {
    let import_started = Instant::now();
    let mut changes = vec![
        r#"ENTRYPOINT ["/usr/local/sbin/swarm-e2e-node-init"]"#.to_string(),
        format!("LABEL swarm-e2e.recipe={NODE_IMAGE_RECIPE}"),
    ];
    changes.extend(labels.iter().map(|(k, v)| format!("LABEL swarm-e2e.{k}={v}")));
    let mut tar = tokio::process::Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .context("running tar")?;
    let stdout = tar.stdout.take().expect("piped stdout");
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(stdout));
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(changes)
        .build();
    host.create_image(Some(options), Some(body), None)
        .try_collect::<Vec<_>>()
        .await
        .with_context(|| format!("importing {repo}:{tag}"))?;
    let tar_status = tar.wait().await?;
    if !tar_status.success() {
        bail!("tar of the root filesystem failed: {tar_status}");
    }
    progress(&format!("imported in {:.1}s", import_started.elapsed().as_secs_f64()));
    Ok(())
}

/// The engineless base (of the current recipe), where a fake droplet whose boot script
/// installs a static engine archive boots; it is built with the first static image.
pub async fn engineless_base(host: &Docker) -> anyhow::Result<String> {
    let tag = format!("{NODE_BASE_REPO}:{STATIC_BASE_SUITE}");
    let current = match host.inspect_image(&tag).await {
        Ok(i) => {
            i.config
                .and_then(|c| c.labels)
                .unwrap_or_default()
                .get("swarm-e2e.recipe")
                .map(String::as_str)
                == Some(NODE_IMAGE_RECIPE)
        }
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => false,
        Err(e) => return Err(e).context("inspecting the engineless base image"),
    };
    anyhow::ensure!(
        current,
        "the engineless base image {tag} (of recipe {NODE_IMAGE_RECIPE}) is not built; a fake droplet that installs \
         a static engine archive boots on it\nhint: run `swarm-e2e node-image build --static URL` once (it builds the base too)"
    );
    Ok(tag)
}

/// The engineless Debian base of static-binaries images, built once (cached by recipe).
async fn static_base(host: &Docker, progress: &(dyn Fn(&str) + Sync)) -> anyhow::Result<String> {
    let tag = format!("{NODE_BASE_REPO}:{STATIC_BASE_SUITE}");
    let cached = match host.inspect_image(&tag).await {
        Ok(i) => {
            let labels = i.config.and_then(|c| c.labels).unwrap_or_default();
            labels.get("swarm-e2e.recipe").map(String::as_str) == Some(NODE_IMAGE_RECIPE)
        }
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => false,
        Err(e) => return Err(e).context("inspecting the static base image"),
    };
    if cached {
        return Ok(tag);
    }
    let packages = format!("{BASE_PACKAGES},{STATIC_BASE_EXTRA}");
    let (_work, rootfs) = debootstrap(STATIC_BASE_SUITE, "Debian 12, no engine", &packages, progress).await?;
    import_rootfs(
        host,
        &rootfs,
        NODE_BASE_REPO,
        STATIC_BASE_SUITE,
        &[("kind", "base".to_string())],
        progress,
    )
    .await?;
    Ok(tag)
}

/// The binaries a static engine archive must hold (under `docker/`), and ones it
/// usually holds. Without `docker-init`, workloads' `--init` fails; without
/// `docker-proxy`, published ports do.
const STATIC_REQUIRED: &[&str] = &["dockerd", "containerd", "runc"];
const STATIC_EXPECTED: &[&str] = &[
    "docker",
    "containerd-shim-runc-v2",
    "docker-init",
    "docker-proxy",
    "ctr",
];

/// Builds a node image from static engine binaries: `source` is a `.tgz`/`.tar` in the
/// layout of Docker's static release archives (`docker/dockerd`, `docker/containerd`,
/// `docker/runc`, ...), a directory holding that `docker/` folder, or an http(s) URL of
/// such an archive. Tagged `swarm-e2e/node:<tag>`, where `tag` defaults to the version
/// `dockerd --version` reports (`+` becomes `-`).
pub async fn build_static_node_image(
    host: &Docker,
    source: &str,
    tag: Option<&str>,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<NodeImageInfo> {
    let work = tempfile::Builder::new()
        .prefix("swarm-e2e-static-engine-")
        .tempdir()
        .context("creating a build directory")?;
    let bin = work.path().join("docker");
    std::fs::create_dir_all(&bin)?;
    fetch_static_binaries(source, &bin, progress).await?;
    let (engine_version, containerd, runc) = static_versions(&bin).await?;
    let tag = match tag {
        Some(t) => t.to_string(),
        None => engine_version.replace(['+', '~'], "-"),
    };
    if !swarm_e2e_model::valid_engine_version(&tag) {
        bail!(
            "`{tag}` cannot name a node image\nhint: pass `--engine NAME` with MAJOR.MINOR.PATCH and an optional suffix, e.g. 27.0.0-rc.1"
        );
    }
    let base = static_base(host, progress).await?;
    progress(&format!(
        "building {} from {base} with dockerd {engine_version}, containerd {containerd}, runc {runc}",
        node_image_tag(&tag)
    ));
    build_static_image(
        host,
        &base,
        source,
        &tag,
        &bin,
        [&engine_version, &containerd, &runc],
        progress,
    )
    .await
}

/// Puts the static binaries of `source` (an archive's URL or path, or a folder holding
/// `docker/`) into `bin`, and checks the ones every node needs are there.
async fn fetch_static_binaries(source: &str, bin: &Path, progress: &(dyn Fn(&str) + Sync)) -> anyhow::Result<()> {
    let archive: Option<Vec<u8>> = if source.starts_with("http://") || source.starts_with("https://") {
        progress(&format!("downloading {source}"));
        // A byte bar on a terminal, a heartbeat in a log, from the request on (a slow
        // server may take its time to answer at all).
        let step = crate::progress::LongStep::bytes(&format!("downloading {source}"), None);
        let mut response = reqwest::Client::new()
            .get(source)
            .timeout(std::time::Duration::from_secs(600))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("downloading {source}"))?;
        let total = response.content_length();
        drop(step);
        let step = crate::progress::LongStep::bytes(&format!("downloading {source}"), total);
        let mut bytes = Vec::with_capacity(total.unwrap_or(0).min(1 << 30) as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("downloading {source}"))?
        {
            bytes.extend_from_slice(&chunk);
            step.advance(chunk.len() as u64);
            step.status(&format!(
                "{:.1} MB of {}",
                bytes.len() as f64 / 1e6,
                total
                    .map(|t| format!("{:.1} MB", t as f64 / 1e6))
                    .unwrap_or_else(|| "?".into())
            ));
        }
        drop(step);
        progress(&format!("downloaded {:.1} MB", bytes.len() as f64 / 1e6));
        Some(bytes)
    } else if Path::new(source).is_dir() {
        let dir = Path::new(source).join("docker");
        if !dir.is_dir() {
            bail!(
                "{source} has no `docker/` folder\nhint: give the folder that holds `docker/dockerd`, or the archive itself"
            );
        }
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), bin.join(entry.file_name()))?;
            }
        }
        None
    } else {
        Some(std::fs::read(source).with_context(|| {
            format!(
                "reading {source}\nhint: give a .tgz of Docker's static release layout, a folder, or an http(s) URL"
            )
        })?)
    };
    if let Some(bytes) = archive {
        unpack_static_archive(&bytes, bin).with_context(|| format!("unpacking {source}"))?;
    }
    for name in STATIC_REQUIRED {
        if !bin.join(name).is_file() {
            bail!(
                "{source} has no `docker/{name}`\nhint: a static engine archive holds docker/dockerd, docker/containerd and docker/runc (the layout of Docker's static release archives)"
            );
        }
    }
    let missing: Vec<&str> = STATIC_EXPECTED
        .iter()
        .copied()
        .filter(|n| !bin.join(n).is_file())
        .collect();
    if !missing.is_empty() {
        progress(&format!("note: the archive has no {}", missing.join(", ")));
    }
    Ok(())
}

/// The versions the binaries report: dockerd, containerd, runc (the last two may be
/// unknown).
async fn static_versions(bin: &Path) -> anyhow::Result<(String, String, String)> {
    let engine_version = binary_version(&bin.join("dockerd"), &["--version"], |out| {
        out.split_whitespace()
            .skip_while(|w| *w != "version")
            .nth(1)
            .map(|v| v.trim_end_matches(',').to_string())
    })
    .await?;
    let containerd = binary_version(&bin.join("containerd"), &["--version"], |out| {
        out.split_whitespace().nth(2).map(str::to_string)
    })
    .await
    .unwrap_or_default();
    let runc = binary_version(&bin.join("runc"), &["--version"], |out| {
        out.lines().next()?.split_whitespace().nth(2).map(str::to_string)
    })
    .await
    .unwrap_or_default();
    Ok((engine_version, containerd, runc))
}

/// Builds `swarm-e2e/node:<tag>` from `base` with the binaries in `bin`; the labels
/// record where they came from and their versions (engine, containerd, runc).
async fn build_static_image(
    host: &Docker,
    base: &str,
    source: &str,
    tag: &str,
    bin: &Path,
    [engine_version, containerd, runc]: [&str; 3],
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<NodeImageInfo> {
    let label = |k: &str, v: &str| format!("LABEL swarm-e2e.{k}={}", serde_json::Value::from(v));
    let dockerfile = [
        format!("FROM {base}"),
        "COPY docker/ /usr/local/bin/".to_string(),
        label("kind", "static"),
        label("suite", source),
        label("engine-package", engine_version),
        label("containerd-package", containerd),
        label("runc-package", runc),
    ]
    .join("\n");
    let mut context = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    context.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())?;
    context.append_dir_all("docker", bin)?;
    let context = context.into_inner()?;
    let started = Instant::now();
    let options = bollard::query_parameters::BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&node_image_tag(tag))
        .rm(true)
        .forcerm(true)
        .build();
    let messages: Vec<_> = host
        .build_image(options, None, Some(bollard::body_full(context.into())))
        .collect()
        .await;
    for m in messages {
        let info = m.context("building the static-binaries image")?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            bail!("building the static-binaries image: {err}");
        }
    }
    progress(&format!("built in {:.1}s", started.elapsed().as_secs_f64()));
    find_node_image(host, tag)
        .await?
        .context("the static-binaries image is missing right after the build")
}

/// Unpacks the `docker/*` files of a (gzipped) tar into `bin`; nothing outside it.
fn unpack_static_archive(bytes: &[u8], bin: &Path) -> anyhow::Result<()> {
    let reader: Box<dyn std::io::Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut archive = tar::Archive::new(reader);
    let mut found = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let mut parts = path.components().filter(|c| !matches!(c, std::path::Component::CurDir));
        let (Some(dir), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if dir.as_os_str() != "docker" || !entry.header().entry_type().is_file() {
            continue;
        }
        entry.unpack(bin.join(name.as_os_str()))?;
        found += 1;
    }
    if found == 0 {
        bail!(
            "no `docker/*` files in the archive\nhint: Docker's static archives hold docker/dockerd, docker/containerd, docker/runc, ..."
        );
    }
    Ok(())
}

/// Runs `binary args` (bounded) and reads a version out of its output.
async fn binary_version(
    binary: &Path,
    args: &[&str],
    parse: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tokio::process::Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("{} {} did not answer within 20s", binary.display(), args.join(" ")))?
    .with_context(|| format!("running {}", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse(&text).with_context(|| {
        format!(
            "could not read a version from `{} {}`: {}",
            binary.display(),
            args.join(" "),
            text.trim()
        )
    })
}

/// Every node image of the current recipe, packaged and static.
pub async fn list_node_images(host: &Docker) -> anyhow::Result<Vec<NodeImageInfo>> {
    let filters = HashMap::from([("reference".to_string(), vec![format!("{NODE_IMAGE_REPO}:*")])]);
    let images = host
        .list_images(Some(
            bollard::query_parameters::ListImagesOptionsBuilder::new()
                .filters(&filters)
                .build(),
        ))
        .await
        .context("listing node images")?;
    let mut out = Vec::new();
    for tag in images.into_iter().flat_map(|i| i.repo_tags) {
        if let Some(t) = tag.strip_prefix(&format!("{NODE_IMAGE_REPO}:"))
            && let Some(info) = find_node_image(host, t).await?
        {
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(out)
}

fn install_init(rootfs: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (name, body) in [("swarm-e2e-node-init", NODE_INIT), ("systemctl", SYSTEMCTL)] {
        let path = rootfs.join("usr/local/sbin").join(name);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, body)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::create_dir_all(rootfs.join("etc/systemd/system"))?;
    std::fs::create_dir_all(rootfs.join("etc/swarm-e2e"))?;
    Ok(())
}

fn clean_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Versions of the named packages from a dpkg status file.
pub fn package_versions(status: &str, wanted: &[&str]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for stanza in status.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
                .map(str::trim)
        };
        if let (Some(pkg), Some(version)) = (field("Package"), field("Version"))
            && wanted.contains(&pkg)
            && field("Status").is_some_and(|s| s.ends_with("installed"))
        {
            out.insert(pkg.to_string(), version.to_string());
        }
    }
    out
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// Where Debian's busybox-static puts its binary.
const BUSYBOX_BINARY: &str = "/bin/busybox";

/// Makes sure the host engine has the busybox test image and returns it in `docker save`
/// form, ready to be loaded into nodes.
pub async fn busybox_image_tarball(host: &Docker) -> anyhow::Result<Bytes> {
    ensure_busybox_image(host).await?;
    let chunks: Vec<Bytes> = host
        .export_image(BUSYBOX_IMAGE)
        .try_collect()
        .await
        .context("saving the busybox image")?;
    Ok(chunks.concat().into())
}

/// Imports the busybox test image into the host engine unless it is there.
pub async fn ensure_busybox_image(host: &Docker) -> anyhow::Result<()> {
    match host.inspect_image(BUSYBOX_IMAGE).await {
        Ok(_) => {}
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
            let rootfs = busybox_rootfs()?;
            let (repo, tag) = BUSYBOX_IMAGE.split_once(':').unwrap();
            let options = CreateImageOptionsBuilder::new()
                .from_src("-")
                .repo(repo)
                .tag(tag)
                .changes(vec![r#"CMD ["sh"]"#.to_string()])
                .build();
            host.create_image(Some(options), Some(bollard::body_full(rootfs.into())), None)
                .try_collect::<Vec<_>>()
                .await
                .context("importing the busybox image into the host engine")?;
        }
        Err(e) => return Err(e).context("inspecting the busybox image"),
    }
    Ok(())
}

/// A root filesystem tar: the static busybox binary and a link per applet.
fn busybox_rootfs() -> anyhow::Result<Vec<u8>> {
    let binary = std::fs::read(BUSYBOX_BINARY)
        .with_context(|| format!("reading {BUSYBOX_BINARY}\nhint: apt-get install -y busybox-static"))?;
    let list = std::process::Command::new(BUSYBOX_BINARY)
        .arg("--list-full")
        .output()
        .context("listing busybox applets")?;
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = |path: &str, mode: u32| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(0);
        builder.append_data(&mut h, path, std::io::empty())
    };
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys", "dev", "var",
    ] {
        dir(d, 0o755)?;
    }
    dir("tmp", 0o1777)?;
    let mut file = |path: &str, mode: u32, body: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(body.len() as u64);
        h.set_mtime(0);
        builder.append_data(&mut h, path, body)
    };
    file("bin/busybox", 0o755, &binary)?;
    file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_mtime(0);
        builder.append_link(&mut h, applet, "/bin/busybox")?;
    }
    Ok(builder.into_inner()?)
}

/// Loads a `docker save` tarball into an engine (`docker load`).
pub async fn load_image(engine: &Docker, tarball: Bytes) -> anyhow::Result<()> {
    let results: Vec<_> = engine
        .import_image(
            ImportImageOptionsBuilder::new().quiet(true).build(),
            bollard::body_full(tarball),
            None,
        )
        .collect()
        .await;
    for r in results {
        let info = r.context("loading the image")?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            bail!("loading the image: {err}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_versions_map_to_suites() {
        assert_eq!(release_for("20.10").unwrap().suite, "bookworm");
        assert_eq!(release_for("26.1.5").unwrap().suite, "trixie");
        let err = release_for("19.03").unwrap_err().to_string();
        assert!(err.contains("20.10") && err.contains("hint"), "{err}");
    }

    #[test]
    fn reads_installed_versions_from_dpkg_status() {
        let status = "Package: docker.io\nStatus: install ok installed\nVersion: 20.10.24+dfsg1-1\n\n\
                      Package: runc\nStatus: deinstall ok config-files\nVersion: 1.1\n\n\
                      Package: containerd\nStatus: install ok installed\nVersion: 1.6.20\n";
        let v = package_versions(status, &["docker.io", "runc", "containerd"]);
        assert_eq!(v.get("docker.io").unwrap(), "20.10.24+dfsg1-1");
        assert_eq!(v.get("containerd").unwrap(), "1.6.20");
        assert!(!v.contains_key("runc"));
    }
}
