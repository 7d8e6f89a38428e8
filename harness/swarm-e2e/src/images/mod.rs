//! Images without a registry.
//!
//! * Node images ([`packaged`]): a Debian root filesystem made by debootstrap with the
//!   distribution's `docker.io`, imported into the host engine and tagged by engine
//!   version. The Debian suite decides the engine version.
//! * Static-binaries node images ([`static_engine`]): a release candidate's
//!   `docker/dockerd`, `docker/containerd`, `docker/runc`, ... (the layout of Docker's
//!   static release archives) copied onto a Debian base without an engine, tagged by the
//!   version `dockerd --version` reports.
//! * The busybox test image ([`test_image`]): Debian's `busybox-static` binary and its
//!   applet links, imported once into the host engine, then saved and loaded into every
//!   node so the image ID is the same everywhere.
//!
//! This module finds, lists and resolves node images whatever built them; [`rootfs`] is
//! the debootstrap and import both node image kinds are made with.

pub mod docker_cli;
mod packaged;
mod rootfs;
mod static_engine;
mod test_image;

use std::collections::HashMap;

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::query_parameters::ImportImageOptionsBuilder;
use bytes::Bytes;
use futures_util::StreamExt;

pub use packaged::build_node_image;
pub use rootfs::package_versions;
pub use static_engine::{build_static_node_image, engineless_base};
pub use test_image::{BUSYBOX_IMAGE, busybox_image_tarball, ensure_busybox_image};

/// Bumped whenever the node image recipe changes, so cached images are rebuilt.
pub const NODE_IMAGE_RECIPE: &str = "6";
pub const NODE_IMAGE_REPO: &str = "swarm-e2e/node";

/// An engine release we can build a node image for, and the Debian suite that ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineRelease {
    pub engine: &'static str,
    pub suite: &'static str,
    pub debian: &'static str,
    /// Packages beyond the engine: the classic topology's key-value store (etcd, with
    /// its v2 API) where the engine still has `--cluster-store`; the docker CLI where the
    /// suite packages it apart from the engine (`--docker-cli engine` deploys stacks
    /// with the CLI of the engine under test).
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
        extra_packages: "docker-cli",
    },
    EngineRelease {
        engine: "28.5",
        suite: "sid",
        debian: "Debian unstable",
        extra_packages: "docker-cli",
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

/// Whether `tag` exists in the host engine and was made by the current recipe
/// (`what` names it in the error).
async fn is_current_recipe(host: &Docker, tag: &str, what: &str) -> anyhow::Result<bool> {
    match host.inspect_image(tag).await {
        Ok(i) => {
            let labels = i.config.and_then(|c| c.labels).unwrap_or_default();
            Ok(labels.get("swarm-e2e.recipe").map(String::as_str) == Some(NODE_IMAGE_RECIPE))
        }
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("inspecting {what}")),
    }
}

/// Loads a `docker save` tarball into an engine (`docker load`).
pub async fn load_image(engine: &Docker, tarball: Bytes) -> anyhow::Result<()> {
    let options = ImportImageOptionsBuilder::new().quiet(true).build();
    import_ended(
        engine
            .import_image(options, bollard::body_full(tarball), None)
            .collect()
            .await,
    )
}

/// Loads a `docker save` tarball into an engine as its chunks arrive.
pub async fn load_image_stream(
    engine: &Docker,
    chunks: impl futures_util::Stream<Item = Bytes> + Send + 'static,
) -> anyhow::Result<()> {
    let options = ImportImageOptionsBuilder::new().quiet(true).build();
    import_ended(
        engine
            .import_image(options, bollard::body_stream(chunks), None)
            .collect()
            .await,
    )
}

/// What an image load said, as an error when it failed.
fn import_ended(results: Vec<Result<bollard::models::BuildInfo, bollard::errors::Error>>) -> anyhow::Result<()> {
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
}
