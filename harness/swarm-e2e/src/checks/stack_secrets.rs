//! `stack-secrets`: every secret and config a stack's services reference is inside each
//! of their running tasks at its target, with the mode and owner the service declares,
//! and, where the Compose file made it from a `file:`, with that file's content. Looked
//! at from inside the task container on its own node (`stat`, `cat`): what the
//! application reads, as each node's agent delivered it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bollard::models::{Service, TaskState};

use super::probe::{exec, node_of, start_bound, state_of};
use super::{CheckEnv, Outcome};
use crate::stacks::{self, short_name};
use swarm_e2e_model::{Check, CheckKind};

/// One secret or config as a service mounts it.
#[derive(Debug, Clone)]
struct Mount {
    /// `secret api_key` or `config index`, for messages.
    what: String,
    /// Where the application finds it.
    target: String,
    /// Mode and owner as `stat -c '%a %u %g'` prints them.
    expected: String,
    /// The `file:` it was made from, when the Compose file says.
    source: Option<PathBuf>,
}

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::StackSecrets { stack } = &check.kind else {
        return Err(super::misrouted(check));
    };
    let declared = env.scenario.stack(stack).expect("validated stack");
    if let Err(m) = super::stack_converges::converged(env, stack, &declared.services, start_bound(env)).await {
        return Ok(Outcome::Failed(format!("cannot look inside the tasks: {m}")));
    }
    let manager = &env.cluster.manager().docker;
    let names = env.cluster.names_by_id();
    let mut looks = Vec::new();
    for s in stacks::services(manager, stack).await? {
        let wanted = mounts(stack, &s, &declared.secret_files, &declared.config_files);
        if wanted.is_empty() {
            continue;
        }
        let service = short_name(
            stack,
            s.spec.as_ref().and_then(|x| x.name.as_deref()).unwrap_or_default(),
        )
        .to_string();
        for t in stacks::tasks(manager, s.id.as_deref().unwrap_or_default()).await? {
            if t.desired_state != Some(TaskState::RUNNING) || state_of(&t) != TaskState::RUNNING {
                continue;
            }
            let id = t
                .status
                .as_ref()
                .and_then(|s| s.container_status.as_ref()?.container_id.clone());
            if let Some(id) = id {
                looks.push((service.clone(), node_of(&t, &names), id, wanted.clone()));
            }
        }
    }
    if looks.is_empty() {
        return Ok(Outcome::Failed(format!(
            "no service of stack {stack} has a secret or a config: nothing to check (give a service `secrets:` or \
             `configs:`, or drop this check)"
        )));
    }
    let results = futures_util::future::join_all(
        looks
            .iter()
            .map(|(service, node, id, wanted)| async move { inside(env, service, node, id, wanted).await }),
    )
    .await;
    let (mut wrong, mut blind) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            Look::Right => {}
            Look::Wrong(m) => wrong.extend(m),
            Look::Blind(why) => blind.push(why),
        }
    }
    Ok(match (wrong.is_empty(), blind.is_empty()) {
        (false, _) => Outcome::Failed(wrong.join("\n")),
        (true, true) => Outcome::Passed,
        (true, false) => Outcome::Ignored(blind.join("; ")),
    })
}

/// The secrets and configs `s` mounts, with what each should look like.
fn mounts(
    stack: &str,
    s: &Service,
    secret_files: &BTreeMap<String, PathBuf>,
    config_files: &BTreeMap<String, PathBuf>,
) -> Vec<Mount> {
    let Some(spec) = s
        .spec
        .as_ref()
        .and_then(|x| x.task_template.as_ref()?.container_spec.as_ref())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for secret in spec.secrets.iter().flatten() {
        let (Some(name), Some(file)) = (secret.secret_name.as_deref(), secret.file.as_ref()) else {
            continue;
        };
        let target = file.name.clone().unwrap_or_default();
        let short = short_name(stack, name);
        out.push(Mount {
            what: format!("secret {short}"),
            // Relative targets are under /run/secrets (absolute ones since engine 20.10).
            target: if target.starts_with('/') {
                target
            } else {
                format!("/run/secrets/{target}")
            },
            expected: owner_and_mode(file.mode, file.uid.as_deref(), file.gid.as_deref()),
            source: secret_files.get(short).cloned(),
        });
    }
    for config in spec.configs.iter().flatten() {
        let (Some(name), Some(file)) = (config.config_name.as_deref(), config.file.as_ref()) else {
            continue;
        };
        let target = file.name.clone().unwrap_or_default();
        let short = short_name(stack, name);
        out.push(Mount {
            what: format!("config {short}"),
            target: if target.starts_with('/') {
                target
            } else {
                format!("/{target}")
            },
            expected: owner_and_mode(file.mode, file.uid.as_deref(), file.gid.as_deref()),
            source: config_files.get(short).cloned(),
        });
    }
    out
}

/// `stat -c '%a %u %g'` of a file with this mode and owner (0444 root's unless told).
fn owner_and_mode(mode: Option<u32>, uid: Option<&str>, gid: Option<&str>) -> String {
    let id = |v: Option<&str>| v.filter(|v| !v.is_empty()).unwrap_or("0").to_string();
    format!("{:o} {} {}", mode.unwrap_or(0o444), id(uid), id(gid))
}

enum Look {
    Right,
    Wrong(Vec<String>),
    /// The task's image cannot be looked into (no `stat` or `cat`): why.
    Blind(String),
}

/// Each of `wanted` as the task container `id` on `node` sees it.
async fn inside(env: &CheckEnv, service: &str, node: &str, id: &str, wanted: &[Mount]) -> Look {
    let docker = &env.cluster.node(node).docker;
    let mut wrong = Vec::new();
    for m in wanted {
        let at = format!("{service}'s task on {node}: {} at {}", m.what, m.target);
        let stat = match exec(docker, id, &["stat", "-c", "%a %u %g", &m.target]).await {
            Ok((0, out)) => out.trim().to_string(),
            Ok((_, out))
                if out.contains("executable file not found") || out.contains("no such file or directory: unknown") =>
            {
                return Look::Blind(format!("{service}'s image has no `stat` to look inside with"));
            }
            Ok((code, out)) => {
                wrong.push(format!("{at} is missing (stat exited {code}: {})", out.trim()));
                continue;
            }
            Err(e) => {
                let e = format!("{e:#}");
                if e.contains("executable file not found") {
                    return Look::Blind(format!("{service}'s image has no `stat` to look inside with"));
                }
                wrong.push(format!("{at}: cannot look: {e}"));
                continue;
            }
        };
        if stat != m.expected {
            wrong.push(format!(
                "{at} has mode and owner `{stat}`, declared `{}` (mode uid gid)",
                m.expected
            ));
        }
        let Some(source) = &m.source else { continue };
        let declared = match std::fs::read(source) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                wrong.push(format!("{at}: cannot read its source {}: {e}", source.display()));
                continue;
            }
        };
        match exec(docker, id, &["cat", &m.target]).await {
            Ok((0, out)) if out == declared => {}
            Ok((0, out)) => wrong.push(format!(
                "{at} holds {} byte(s) that differ from {} ({} byte(s))",
                out.len(),
                source.display(),
                declared.len()
            )),
            Ok((code, out)) if out.contains("denied") => wrong.push(format!(
                "{at} cannot be read by the task's user (cat exited {code}: {}): give the secret a `uid`, `gid` or \
                 `mode` that lets the service's `user` read it",
                out.trim()
            )),
            Ok((code, out)) => wrong.push(format!("{at}: cat exited {code}: {}", out.trim())),
            Err(e) => wrong.push(format!("{at}: cannot read it: {e:#}")),
        }
    }
    if wrong.is_empty() {
        Look::Right
    } else {
        Look::Wrong(wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_owners_read_as_stat_prints_them() {
        assert_eq!(owner_and_mode(Some(0o400), Some("0"), Some("0")), "400 0 0");
        assert_eq!(owner_and_mode(None, None, Some("")), "444 0 0");
        assert_eq!(owner_and_mode(Some(0o440), Some("1000"), Some("33")), "440 1000 33");
    }
}
