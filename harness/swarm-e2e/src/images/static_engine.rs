//! Static-binaries node images: a release candidate's loose engine binaries (the layout
//! of Docker's static release archives, from a path, a folder or a URL) copied onto an
//! engineless Debian base, tagged by the version `dockerd --version` reports.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};
use bollard::Docker;
use futures_util::StreamExt;

use super::rootfs::{BASE_PACKAGES, debootstrap, import_rootfs};
use super::{NODE_IMAGE_RECIPE, NodeImageInfo, find_node_image, is_current_recipe, node_image_tag};

/// Libraries engines built against Debian need when they come as loose binaries
/// (a static release archive needs none of them).
const STATIC_BASE_EXTRA: &str = "libdevmapper1.02.1,libseccomp2,libsystemd0";
/// The base of static-binaries images: no engine, and the suite of the oldest engine.
pub const NODE_BASE_REPO: &str = "swarm-e2e/node-base";
const STATIC_BASE_SUITE: &str = "bookworm";

/// The engineless base (of the current recipe), where a fake droplet whose boot script
/// installs a static engine archive boots; it is built with the first static image.
pub async fn engineless_base(host: &Docker) -> anyhow::Result<String> {
    let tag = format!("{NODE_BASE_REPO}:{STATIC_BASE_SUITE}");
    anyhow::ensure!(
        is_current_recipe(host, &tag, "the engineless base image").await?,
        "the engineless base image {tag} (of recipe {NODE_IMAGE_RECIPE}) is not built; a fake droplet that installs \
         a static engine archive boots on it\nhint: run `swarm-e2e node-image build --static URL` once (it builds the base too)"
    );
    Ok(tag)
}

/// The engineless Debian base of static-binaries images, built once (cached by recipe).
async fn static_base(host: &Docker, progress: &(dyn Fn(&str) + Sync)) -> anyhow::Result<String> {
    let tag = format!("{NODE_BASE_REPO}:{STATIC_BASE_SUITE}");
    if is_current_recipe(host, &tag, "the static base image").await? {
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
