//! A Debian root filesystem by debootstrap, with the node init installed, and its import
//! into the host engine: what packaged node images and the engineless base of
//! static-binaries images are made of.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::TryStreamExt;

use super::NODE_IMAGE_RECIPE;

const NODE_INIT: &str = include_str!("../../../../fixtures/node-image/swarm-e2e-node-init");
/// `systemctl` for boot scripts, in containers without systemd (fake droplets).
const SYSTEMCTL: &str = include_str!("../../../../fixtures/node-image/swarm-e2e-systemctl");
/// What every node image has besides its engine (curl: a droplet's boot script fetches
/// with it, as on DigitalOcean's images).
pub(super) const BASE_PACKAGES: &str = "iproute2,iptables,procps,ca-certificates,hostname,curl";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// A Debian root filesystem by debootstrap, with the node init installed; the temporary
/// directory holding it goes away with the returned guard.
pub(super) async fn debootstrap(
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
pub(super) async fn import_rootfs(
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

#[cfg(test)]
mod tests {
    use super::*;

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
