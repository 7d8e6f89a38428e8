//! Exit codes (they are API: CI scripts branch on them) and the typed failure every
//! command ends with: a code, what went wrong, and what to do next.

use std::fmt;

pub const OK: i32 = 0;
pub const CHECK_FAILED: i32 = 1;
pub const INVALID_INPUT: i32 = 2;
pub const INFRASTRUCTURE: i32 = 3;
/// The scenario cannot run on its engines or target (reported, nothing provisioned).
pub const UNSUPPORTED: i32 = 4;
/// `matrix`: a check passed on the baseline engine and failed on a candidate.
pub const REGRESSION: i32 = 5;
pub const INTERRUPTED: i32 = 130;

/// What an exit code means, in the words of `swarm-e2e --help`.
pub fn meaning(code: i32) -> &'static str {
    match code {
        OK => "every check passed",
        CHECK_FAILED => "a check failed",
        INVALID_INPUT => "invalid input (a scenario, a flag)",
        INFRASTRUCTURE => "the infrastructure failed (provisioning, engines, the swarm)",
        UNSUPPORTED => "unsupported here (nothing was provisioned)",
        REGRESSION => "a regression: passed on the baseline engine, failed on another",
        INTERRUPTED => "interrupted",
        _ => "unknown exit code",
    }
}

/// The more serious of two exit codes, for runs over several scenarios.
pub fn worst(a: i32, b: i32) -> i32 {
    let rank = |c: i32| match c {
        OK => 0,
        UNSUPPORTED => 1,
        CHECK_FAILED => 2,
        REGRESSION => 3,
        INVALID_INPUT => 4,
        INFRASTRUCTURE => 5,
        _ => 6,
    };
    if rank(a) >= rank(b) { a } else { b }
}

/// Why a command or a run ended badly. Printed once, as `error: …` and `hint: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        let (message, hint) = split_hint(&message.into());
        Failure { code, message, hint }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    pub fn infrastructure(e: impl fmt::Display) -> Failure {
        Failure::new(INFRASTRUCTURE, e.to_string())
    }

    pub fn invalid_input(message: impl Into<String>) -> Failure {
        Failure::new(INVALID_INPUT, message)
    }

    /// Prints the failure to stderr (never panics on a closed pipe).
    pub fn print(&self) {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "error: {self}");
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// An error chain from the harness's side: an infrastructure failure (exit 3), the chain
/// joined by `: `, a hint written into any of its messages (`…\nhint: …`) moved to the end.
impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::new(INFRASTRUCTURE, format!("{e:#}"))
    }
}

/// Splits `message\nhint: …` (the hint may sit in the middle of a joined error chain)
/// into the message and the hint.
fn split_hint(text: &str) -> (String, Option<String>) {
    match text.find("\nhint: ") {
        Some(at) => {
            let (message, rest) = text.split_at(at);
            let rest = &rest["\nhint: ".len()..];
            // In a chain `outer: inner\nhint: h: deeper`, what follows the hint's own
            // line belongs to the message.
            let (hint, tail) = match rest.find('\n') {
                Some(nl) => (&rest[..nl], rest[nl..].trim_start_matches('\n')),
                None => (rest, ""),
            };
            let message = if tail.is_empty() {
                message.to_string()
            } else {
                format!("{message}\n{tail}")
            };
            (message, Some(hint.to_string()))
        }
        None => (text.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_move_to_the_end_and_print_once() {
        let f = Failure::new(INFRASTRUCTURE, "node image missing\nhint: swarm-e2e node-image build");
        assert_eq!(f.message, "node image missing");
        assert_eq!(f.hint.as_deref(), Some("swarm-e2e node-image build"));
        assert_eq!(f.to_string(), "node image missing\nhint: swarm-e2e node-image build");
        let plain = Failure::new(INFRASTRUCTURE, "boom");
        assert_eq!(plain.to_string(), "boom");
    }

    #[test]
    fn worst_prefers_infrastructure_over_failed_checks() {
        assert_eq!(worst(CHECK_FAILED, INFRASTRUCTURE), INFRASTRUCTURE);
        assert_eq!(worst(OK, UNSUPPORTED), UNSUPPORTED);
        assert_eq!(worst(INTERRUPTED, INFRASTRUCTURE), INTERRUPTED);
    }
}
