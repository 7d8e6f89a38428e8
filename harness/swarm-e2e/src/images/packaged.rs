//! Packaged node images: a Debian suite's own `docker.io`, so the suite decides the
//! engine version (the table in [`super::ENGINE_RELEASES`]).

use anyhow::Context;
use bollard::Docker;

use super::rootfs::{BASE_PACKAGES, debootstrap, import_rootfs, package_versions};
use super::{NODE_IMAGE_REPO, NodeImageInfo, find_node_image, node_image_tag, release_for};

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
