//! Where a stack's services may run, read from their Compose `deploy:` (mode, replicas,
//! `placement.constraints`, `placement.preferences`, `endpoint_mode`), so `placement` and
//! `pending` can check a stack's service against the declared nodes as they check a
//! `[[services]]` one. Values are interpolated as the CLI does (`${VAR}`,
//! `${VAR:-default}`, `${VAR-default}`, `$$`) from the stack's `env`; a value that
//! depends on the caller's environment cannot be known, and the service is left out.

use std::collections::BTreeMap;

use crate::constraint::Constraint;
use crate::{EndpointMode, Service, ServiceMode};

/// One Compose service's `deploy:` keys that decide placement, as written (a later file
/// overrides only the keys it has).
#[derive(Debug, Clone, Default)]
pub(crate) struct ComposePlacement {
    pub service: String,
    pub image: Option<String>,
    pub mode: Option<String>,
    pub replicas: Option<String>,
    pub constraints: Option<Vec<String>>,
    pub preferences: Option<Vec<String>>,
    pub endpoint_mode: Option<String>,
}

impl ComposePlacement {
    /// The placement keys of service `name` (its mapping `v`) in one Compose file.
    pub(crate) fn read(name: &str, v: &serde_yaml_ng::Value) -> ComposePlacement {
        let deploy = v.get("deploy");
        let at = |path: &[&str]| {
            let mut cur = deploy?;
            for p in path {
                cur = cur.get(*p)?;
            }
            Some(cur)
        };
        let strings = |x: Option<&serde_yaml_ng::Value>| {
            x.and_then(|x| x.as_sequence())
                .map(|s| s.iter().filter_map(scalar).collect::<Vec<String>>())
        };
        let preferences = at(&["placement", "preferences"])
            .and_then(|p| p.as_sequence())
            .map(|s| {
                s.iter()
                    .filter_map(|p| Some(format!("spread={}", scalar(p.get("spread")?)?)))
                    .collect()
            });
        ComposePlacement {
            service: name.to_string(),
            image: v.get("image").and_then(scalar),
            mode: at(&["mode"]).and_then(scalar),
            replicas: at(&["replicas"]).and_then(scalar),
            constraints: strings(at(&["placement", "constraints"])),
            preferences,
            endpoint_mode: at(&["endpoint_mode"]).and_then(scalar),
        }
    }

    /// `later`'s keys over this one's (`-c a.yml -c b.yml`).
    pub(crate) fn merge(&mut self, later: ComposePlacement) {
        self.image = later.image.or(self.image.take());
        self.mode = later.mode.or(self.mode.take());
        self.replicas = later.replicas.or(self.replicas.take());
        self.constraints = later.constraints.or(self.constraints.take());
        self.preferences = later.preferences.or(self.preferences.take());
        self.endpoint_mode = later.endpoint_mode.or(self.endpoint_mode.take());
    }

    /// The service as the model knows services, named as the swarm names it
    /// (`STACK_SERVICE`), or why its placement cannot be known before the deploy.
    pub(crate) fn service(&self, stack: &str, env: &BTreeMap<String, String>) -> Result<Service, String> {
        let value = |raw: &Option<String>| raw.as_deref().map(|r| interpolate(r, env)).transpose();
        let mode = match value(&self.mode)?.as_deref() {
            Some("global") => ServiceMode::Global,
            None | Some("replicated") => ServiceMode::Replicated {
                replicas: match value(&self.replicas)? {
                    None => 1,
                    Some(r) => r.trim().parse().map_err(|_| format!("`replicas: {r}` is no count"))?,
                },
            },
            Some(other) => return Err(format!("`mode: {other}` is neither replicated nor global")),
        };
        let mut constraints = Vec::new();
        for raw in self.constraints.iter().flatten() {
            let c = interpolate(raw, env)?;
            constraints.push(Constraint::parse(&c).map_err(|e| e.message)?);
        }
        let mut preferences = Vec::new();
        for raw in self.preferences.iter().flatten() {
            preferences.push(interpolate(raw, env)?);
        }
        Ok(Service {
            name: format!("{stack}_{}", self.service),
            image: self.image.clone().unwrap_or_default(),
            command: Vec::new(),
            mode,
            constraints,
            networks: Vec::new(),
            endpoint_mode: match value(&self.endpoint_mode)?.as_deref() {
                Some("dnsrr") => EndpointMode::Dnsrr,
                _ => EndpointMode::Vip,
            },
            preferences,
        })
    }
}

/// A YAML scalar as the text the CLI would interpolate.
fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `raw` with `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$` replaced
/// from `env`; a variable it lacks and no default covers makes the value unknowable.
pub(crate) fn interpolate(raw: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}').ok_or_else(|| format!("`{raw}`: an unclosed `${{`"))?;
            let expr = &r[..end];
            rest = &r[end + 1..];
            let (name, default, empty_too) = match (expr.split_once(":-"), expr.split_once('-')) {
                (Some((n, d)), _) => (n, Some(d), true),
                (None, Some((n, d))) => (n, Some(d), false),
                (None, None) => (expr, None, false),
            };
            match (env.get(name), default) {
                (Some(v), Some(d)) if v.is_empty() && empty_too => out.push_str(d),
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(unknown(raw, name)),
            }
        } else {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..len];
            out.push_str(env.get(name).ok_or_else(|| unknown(raw, name))?);
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn unknown(raw: &str, name: &str) -> String {
    format!(
        "`{raw}` needs ${name}, which the stack's `env` does not set (the caller's environment is not known before the run)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_as_the_cli_does() {
        let env = BTreeMap::from([("N".to_string(), "3".to_string()), ("E".to_string(), String::new())]);
        assert_eq!(interpolate("${N}", &env).unwrap(), "3");
        assert_eq!(interpolate("$N x", &env).unwrap(), "3 x");
        assert_eq!(interpolate("${M:-2}", &env).unwrap(), "2");
        assert_eq!(interpolate("${E:-2}", &env).unwrap(), "2");
        assert_eq!(interpolate("${E-2}", &env).unwrap(), "");
        assert_eq!(interpolate("$$N", &env).unwrap(), "$N");
        assert!(interpolate("${M}", &env).unwrap_err().contains("$M"));
    }

    #[test]
    fn a_later_file_overrides_only_what_it_has() {
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("deploy: {replicas: 3, placement: {constraints: [\"node.role == worker\"]}}")
                .unwrap();
        let mut p = ComposePlacement::read("web", &doc);
        p.merge(ComposePlacement::read(
            "web",
            &serde_yaml_ng::from_str("deploy: {mode: replicated}").unwrap(),
        ));
        let s = p.service("app", &BTreeMap::new()).unwrap();
        assert_eq!(s.name, "app_web");
        assert_eq!(s.mode, ServiceMode::Replicated { replicas: 3 });
        assert_eq!(s.constraints[0].to_string(), "node.role==worker");
    }
}
