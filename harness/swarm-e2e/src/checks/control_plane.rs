//! Why nodes are Down in the swarm while their engines answer: the control plane
//! (tcp/2377, where workers keep their sessions with the managers and managers talk
//! raft). From each such node to each manager a connection is tried on the node's own
//! network stack, and the managers' firewall rules that dropped tcp/2377 are named,
//! all through the Engine API, so the answer is the same on every target.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use swarm_e2e_model::Role;

use super::CheckEnv;
use crate::watchdog::{Needs, Trouble};

/// The managers' port for joins, heartbeats and task assignments (and raft).
const CONTROL_PORT: u16 = 2377;
/// Bound on the whole diagnosis: it runs after the check's verdict is known.
const LIMIT: Duration = Duration::from_secs(15);

/// What was found for each set of Down nodes: the checks the watchdog ends at once
/// share one diagnosis.
pub type Diagnoses = tokio::sync::Mutex<BTreeMap<Vec<String>, String>>;

/// `\ncause: …` for the nodes `needs` names that the watchdog knows are Down while
/// their engines answer; empty when there are none.
pub(super) async fn cause(env: &CheckEnv, needs: &Needs) -> String {
    let facts = env.watchdog.facts();
    let down: Vec<String> = (facts.troubles.iter())
        .filter(|(node, t)| matches!(t, Trouble::Down) && needs.names(node))
        .map(|(node, _)| node.clone())
        .collect();
    if down.is_empty() {
        return String::new();
    }
    let mut known = env.control_plane.lock().await;
    if let Some(said) = known.get(&down) {
        return said.clone();
    }
    let said = match tokio::time::timeout(LIMIT, diagnose(env, &down)).await {
        Ok(said) => said,
        Err(_) => format!(
            "\ncause not found: probing tcp/{CONTROL_PORT} from {} to the managers took over {}",
            down.join(", "),
            humantime::format_duration(LIMIT)
        ),
    };
    known.insert(down, said.clone());
    said
}

/// One line per Down node: each manager it cannot reach on tcp/2377, and the rules of
/// that manager's firewall that dropped it.
async fn diagnose(env: &CheckEnv, down: &[String]) -> String {
    let managers: Vec<&str> = (env.cluster.nodes.iter())
        .filter(|n| n.role == Role::Manager)
        .map(|n| n.name.as_str())
        .collect();
    let dropped = super::datapath::rules_that_dropped(env, &managers, &[("tcp", CONTROL_PORT)]).await;
    let rules: BTreeMap<&str, Vec<String>> = managers.iter().copied().zip(dropped).collect();
    let mut lines = Vec::new();
    for node in down {
        let to: Vec<&str> = managers.iter().copied().filter(|m| *m != node).collect();
        let tries = join_all(to.iter().map(|m| connects(env, node, m))).await;
        let mut blocked = Vec::new();
        for (manager, tried) in to.iter().zip(tries) {
            let address = env.cluster.node(manager).address;
            let what = format!("tcp/{CONTROL_PORT} from {node} to {manager} ({address})");
            match (tried, rules[manager].as_slice()) {
                (Ok(()), _) => {}
                (Err(e), []) => blocked.push(format!(
                    "{what} does not connect ({e}), and no firewall rule of {manager} dropped it"
                )),
                (Err(_), rules) => blocked.push(format!(
                    "{what} is dropped by {manager}'s firewall: {}",
                    rules.join(", ")
                )),
            }
        }
        lines.push(if blocked.is_empty() {
            format!(
                "cause not found: {node} is Down while tcp/{CONTROL_PORT} from it to every manager ({}) connects: \
                 its engine's log says why its heartbeats stopped",
                to.join(", ")
            )
        } else {
            format!(
                "cause: the control plane is cut, so the managers do not hear {node}: {}",
                blocked.join("; ")
            )
        });
    }
    format!("\n{}", lines.join("\n"))
}

/// Whether a TCP connection from `from`'s network stack to `to` on the control port
/// opens; why not, when it does not.
async fn connects(env: &CheckEnv, from: &str, to: &str) -> Result<(), String> {
    use super::datapath::TcpTry;
    match super::datapath::tcp_connects(env, from, to, CONTROL_PORT, "control").await {
        Ok(()) => Ok(()),
        Err(TcpTry::Refused(why)) => Err(why),
        Err(TcpTry::NotRun(e)) => Err(format!("the probe did not run: {e}")),
    }
}
