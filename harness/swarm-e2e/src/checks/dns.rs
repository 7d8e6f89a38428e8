//! `dns`: a name resolves, from a node on an overlay, to exactly the addresses of a
//! service's tasks.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use swarm_e2e_model::BUSYBOX;

use super::probe::{answers, exec, remove_probe, replicas_of, run_container, start_bound, task_addresses};
use super::{CheckEnv, Outcome};
use crate::wait::poll_until;
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::Dns {
        from,
        network,
        query,
        service,
    } = &check.kind
    else {
        return Err(super::misrouted(check));
    };
    run(env, &check.name, from, network, query, service).await
}

/// `query` resolves, from `from` on `network`, to exactly the addresses of `service`'s
/// tasks: one record per task (tasks.<svc>, or the name of a dnsrr service).
pub(super) async fn run(
    env: &CheckEnv,
    check: &str,
    from: &str,
    network: &str,
    query: &str,
    service: &str,
) -> anyhow::Result<Outcome> {
    let replicas = replicas_of(env, service);
    let expected = match poll_until(start_bound(env), Duration::from_millis(100), || async {
        task_addresses(env, service, network, replicas).await.map(Some)
    })
    .await
    {
        Ok(e) => e,
        Err(e) => {
            return Ok(Outcome::Failed(format!(
                "the tasks of `{service}` never all ran: {e:#}"
            )));
        }
    };
    let node = env.cluster.node(from);
    let probe_name = format!("probe-{check}");
    let probe = run_container(
        &node.docker,
        &env.cluster.run_id,
        &probe_name,
        &env.image(BUSYBOX),
        &["top".to_string()],
        Some(network),
    )
    .await
    .with_context(|| format!("starting probe container `{probe_name}` on {from}"))?;
    let result = poll_until(env.timeout, Duration::from_millis(200), || {
        let (expected, probe) = (&expected, &probe);
        async move {
            let (code, out) = exec(&node.docker, probe, &["nslookup", query]).await?;
            let got: BTreeSet<String> = answers(&out).into_iter().collect();
            if code == 0 && &got == expected {
                Ok(Some(()))
            } else {
                anyhow::bail!("the embedded DNS answered {got:?}")
            }
        }
    })
    .await;
    let _ = remove_probe(&node.docker, &probe).await;
    Ok(match result {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(format!(
            "`{query}` from {from} on {network}: expected the {} task address(es) of `{service}` {expected:?}; {e:#}",
            expected.len()
        )),
    })
}
