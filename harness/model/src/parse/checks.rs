//! `[[checks]]`: what every check shares (its kind, its keys, its name, `timeout`,
//! `retries`), read against the kind's entry in [`crate::check_kinds::CHECK_KINDS`];
//! what a kind's own keys mean is its validator's job.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use super::kinds::{CheckInput, Declared, validator};
use super::raw::RawCheck;
use super::{MAX_RETRIES, Parser, S, span_of};
use crate::check_kinds::{CHECK_KINDS, CheckKindSpec, check_kind};
use crate::diag::{Problem, did_you_mean};
use crate::{Check, CheckKind, IMPLICIT_STATE_CHECK, Service, Topology};

impl Parser {
    pub(crate) fn checks(&mut self, raw: Vec<S<RawCheck>>, declared: &Declared<'_>) -> Vec<Check> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for c in raw {
            let span = c.span();
            if let Some(check) = self.check(c.into_inner(), span, declared, &mut seen) {
                out.push(check);
            }
        }
        // Declared state is always verified: a label lost or a node drained after the
        // cluster formed passes every other check (running tasks are not moved). A
        // scenario with a `cluster-state` check of its own names it as it likes.
        // Every stack converges, as every scenario's declared state is checked: a stack
        // whose tasks cannot run fails every other check of it for a reason only this
        // one names.
        for stack in declared.stacks {
            let explicit = out
                .iter()
                .any(|c| matches!(&c.kind, CheckKind::StackConverges { stack: s } if *s == stack.name));
            if !explicit {
                let name = format!("stack-converges-{}", stack.name);
                if seen.insert(name.clone()) {
                    out.push(Check {
                        name,
                        kind: CheckKind::StackConverges {
                            stack: stack.name.clone(),
                        },
                        line: None,
                        timeout: None,
                        retries: None,
                    });
                }
            }
        }
        if !out.iter().any(|c| c.kind == CheckKind::ClusterState) {
            let name = [IMPLICIT_STATE_CHECK, "implicit-declared-state"]
                .into_iter()
                .find(|n| !seen.contains(*n))
                .unwrap_or("implicit-cluster-state");
            out.push(Check {
                name: name.to_string(),
                kind: CheckKind::ClusterState,
                line: None,
                timeout: None,
                retries: None,
            });
        }
        out
    }

    fn check(
        &mut self,
        raw: RawCheck,
        span: Range<usize>,
        declared: &Declared<'_>,
        seen: &mut BTreeSet<String>,
    ) -> Option<Check> {
        let spec = self.kind_of(&raw, declared.topology)?;
        if !self.keys_fit(&raw, spec, &span) {
            return None;
        }
        let subject = raw
            .service
            .as_ref()
            .or(raw.target.as_ref())
            .or(raw.network.as_ref())
            .or(raw.stack.as_ref())
            .map(|s| s.get_ref().clone())
            .unwrap_or_else(|| spec.name.to_string());
        let name = match &raw.name {
            Some(n) => {
                self.name_rule(n, "check name", 80, true, true);
                self.duplicate(seen, n, "check");
                n.get_ref().clone()
            }
            None => {
                let generated = S::new(span.clone(), format!("{}-{subject}", spec.name));
                self.duplicate(seen, &generated, "check");
                generated.into_inner()
            }
        };
        let (timeout, retries) = (raw.timeout.clone(), raw.retries.clone());
        let mut input = CheckInput {
            raw,
            span: span.clone(),
            declared,
        };
        let validate = validator(spec.name).expect("every kind in CHECK_KINDS has a validator in parse/kinds.rs");
        let kind = validate(self, &mut input)?;
        let line = Some(crate::diag::line_col(&self.text, span.start).0);
        let timeout = timeout.as_ref().and_then(|t| self.check_timeout(t));
        let retries = retries.as_ref().and_then(|r| match u32::try_from(*r.get_ref()) {
            Ok(n) if n <= MAX_RETRIES => Some(n),
            _ => {
                self.push(
                    Problem::new(format!("{} retries is not 0 to {MAX_RETRIES}", r.get_ref()), span_of(r))
                        .help("a check that needs more tries than that is broken, not flaky"),
                );
                None
            }
        });
        Some(Check {
            name,
            kind,
            line,
            timeout,
            retries,
        })
    }

    /// The kind's spec, when the kind is known and runs on this topology.
    fn kind_of(&mut self, raw: &RawCheck, topology: Topology) -> Option<&'static CheckKindSpec> {
        let name = raw.kind.get_ref().as_str();
        let Some(spec) = check_kind(name) else {
            let help = match did_you_mean(name, CHECK_KINDS.iter().map(|k| k.name)) {
                Some(g) => format!("did you mean `{g}`?"),
                None => format!(
                    "known kinds: {}",
                    CHECK_KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                ),
            };
            self.push(Problem::new(format!("unknown check kind `{name}`"), span_of(&raw.kind)).help(help));
            return None;
        };
        if !spec.supports(topology) {
            let (needs, here, scenarios) = match topology {
                Topology::Classic => ("swarm mode", "in a classic scenario", "classic"),
                Topology::Swarm => ("the classic topology", "in a swarm scenario", "swarm"),
            };
            let theirs: Vec<String> = CHECK_KINDS
                .iter()
                .filter(|k| k.supports(topology))
                .map(|k| format!("`{}`", k.name))
                .collect();
            let list = match theirs.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                None => "nothing".into(),
            };
            self.push(
                Problem::new(format!("check kind `{name}` needs {needs}"), span_of(&raw.kind))
                    .label(here)
                    .help(format!("{scenarios} scenarios check {list}")),
            );
            return None;
        }
        Some(spec)
    }

    /// Every key the check has is one its kind takes, and every key its kind requires is
    /// there (each problem reported); false when a required key is missing.
    fn keys_fit(&mut self, raw: &RawCheck, spec: &CheckKindSpec, span: &Range<usize>) -> bool {
        let kind = spec.name;
        let mut complete = true;
        for (key, present) in raw.keys_present() {
            if present && !spec.takes(key) {
                let help = if spec.keys.is_empty() {
                    format!("a `{kind}` check takes nothing but `name`, `kind`, `timeout` and `retries`")
                } else {
                    let takes: Vec<&str> = spec
                        .required()
                        .chain(spec.keys.iter().filter(|k| !k.required).map(|k| k.name))
                        .collect();
                    format!("a `{kind}` check takes: {}", takes.join(", "))
                };
                self.push(
                    Problem::new(
                        format!("`{key}` does not apply to checks of kind `{kind}`"),
                        Some(span.clone()),
                    )
                    .help(help),
                );
            }
            if !present && spec.required().any(|r| r == key) {
                complete = false;
                self.push(
                    Problem::new(format!("a `{kind}` check needs `{key}`"), span_of(&raw.kind))
                        .help(format!("add `{key} = ...` to this check")),
                );
            }
        }
        complete
    }

    /// A check's own `timeout`: a duration from 1 s to 1 h.
    fn check_timeout(&mut self, t: &S<String>) -> Option<Duration> {
        match humantime::parse_duration(t.get_ref()) {
            Ok(d) if (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) => Some(d),
            Ok(d) => {
                self.push(
                    Problem::new(
                        format!(
                            "a check's `timeout` of {} is out of range",
                            humantime::format_duration(d)
                        ),
                        span_of(t),
                    )
                    .help("from \"1s\" to \"1h\": it bounds the check from start to verdict"),
                );
                None
            }
            Err(_) => {
                self.push(
                    Problem::new(format!("`{}` is not a duration", t.get_ref()), span_of(t))
                        .help("durations are strings like \"30s\", \"90s\" or \"2m\""),
                );
                None
            }
        }
    }

    pub(crate) fn known_service<'a>(&mut self, name: &S<String>, services: &'a [Service]) -> Option<&'a Service> {
        let found = services.iter().find(|s| &s.name == name.get_ref());
        if found.is_none() {
            let help = match did_you_mean(name.get_ref(), services.iter().map(|s| s.name.as_str())) {
                Some(g) => format!("did you mean `{g}`?"),
                None => "declare it in a `[[services]]` section".into(),
            };
            self.push(
                Problem::new(format!("service `{}` is not declared", name.get_ref()), span_of(name))
                    .label("unknown service")
                    .help(help),
            );
        }
        found
    }
}
