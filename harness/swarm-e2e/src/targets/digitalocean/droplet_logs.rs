//! A droplet's log files, read through the droplet's own engine: a helper container
//! (the busybox test image every node holds) with the droplet's `/var/log` mounted
//! read-only is created, never started, and the file is copied out of it with the
//! Engine API's archive endpoint. The harness reaches real droplets only through their
//! engines (it has no SSH), so this is the one way their boot script's output and the
//! engine's own log become failure artefacts; the fake's droplets are read the same way.

use anyhow::Context;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::TryStreamExt;

use crate::images::BUSYBOX_IMAGE;

/// Where the helper container sees the droplet's `/var/log`.
const MOUNTED_AT: &str = "/droplet-log";

/// The most of one log kept: its end, where a failure shows.
pub const LOG_TAIL_BYTES: usize = 4 * 1024 * 1024;

/// Reads `path` (a file under `/var/log` on the droplet) through `engine`.
pub async fn read_droplet_log(engine: &Docker, run_id: &str, path: &str) -> anyhow::Result<String> {
    let relative = path
        .strip_prefix("/var/log/")
        .with_context(|| format!("{path} is not under /var/log"))?;
    let body = ContainerCreateBody {
        image: Some(BUSYBOX_IMAGE.to_string()),
        cmd: Some(vec!["true".into()]),
        labels: Some(crate::marks::workload_labels(run_id)),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("/var/log:{MOUNTED_AT}:ro")]),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let file: String = relative
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
        .collect();
    let name = format!("swarm-e2e-{run_id}-read-{file}-{}", std::process::id());
    let created = engine
        .create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), body)
        .await
        .with_context(|| format!("creating a helper container from {BUSYBOX_IMAGE} on the droplet's engine"))?;
    let archive = engine
        .download_from_container(
            &created.id,
            Some(
                DownloadFromContainerOptionsBuilder::new()
                    .path(&format!("{MOUNTED_AT}/{relative}"))
                    .build(),
            ),
        )
        .map_ok(|chunk| chunk.to_vec())
        .try_concat()
        .await;
    let removed = engine
        .remove_container(
            &created.id,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await;
    let archive = archive.with_context(|| format!("copying {path} out of the helper container"))?;
    removed.with_context(|| format!("removing the helper container {name}"))?;
    let text = crate::images::docker_cli::first_file(&archive).with_context(|| format!("unpacking {path}"))?;
    let text = String::from_utf8_lossy(&text);
    Ok(tail(&text, LOG_TAIL_BYTES))
}

/// The last `limit` bytes of `text` (from a line start), marked as cut when they are not all.
fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let start = text[start..].find('\n').map_or(start, |i| start + i + 1);
    format!("[… the first {} bytes are left out]\n{}", start, &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_whole_lines_from_the_end() {
        let text = "one\ntwo\nthree\n";
        assert_eq!(tail(text, 100), text);
        assert_eq!(tail(text, 7), "[… the first 8 bytes are left out]\nthree\n");
    }
}
