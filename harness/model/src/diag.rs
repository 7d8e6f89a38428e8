//! Validation problems: every one carries a span into the scenario file, a message and a
//! hint, and they are reported together (one run of `validate` shows all of them).

use std::ops::Range;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

/// One problem found in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub span: Option<Range<usize>>,
    pub label: Option<String>,
    pub help: Option<String>,
}

impl Problem {
    pub fn new(message: impl Into<String>, span: Option<Range<usize>>) -> Self {
        Problem {
            message: message.into(),
            span,
            label: None,
            help: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// All problems of one scenario file; renders through miette with file:line:column.
#[derive(Debug, Clone)]
pub struct ScenarioError {
    pub path: String,
    source_text: Arc<String>,
    pub problems: Vec<Problem>,
}

impl ScenarioError {
    pub fn new(path: &str, source_text: &str, problems: Vec<Problem>) -> Self {
        ScenarioError {
            path: path.to_string(),
            source_text: Arc::new(source_text.to_string()),
            problems,
        }
    }

    /// 1-based line and column of a byte offset, as editors count them.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.source_text, offset)
    }

    /// One line per problem, `path:line:col: message (hint)` (`path: message (hint)` for
    /// the whole file): grep-able in CI logs.
    pub fn short_lines(&self) -> Vec<String> {
        self.problems
            .iter()
            .map(|p| {
                // A problem of the whole file (it cannot be read) has no place in it.
                let at = match &p.span {
                    Some(s) => {
                        let (l, c) = self.line_col(s.start);
                        format!("{}:{l}:{c}", self.path)
                    }
                    None => self.path.clone(),
                };
                match &p.help {
                    Some(h) => format!("{at}: {} (hint: {h})", p.message),
                    None => format!("{at}: {}", p.message),
                }
            })
            .collect()
    }

    /// The miette diagnostics, one per problem, each with the file as its source.
    pub fn diagnostics(&self) -> Vec<ProblemDiagnostic> {
        self.problems
            .iter()
            .map(|p| ProblemDiagnostic {
                problem: p.clone(),
                source: NamedSource::new(self.path.clone(), self.source_text.clone()).with_language("toml"),
            })
            .collect()
    }
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} problem(s)", self.path, self.problems.len())
    }
}

impl std::error::Error for ScenarioError {}

pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|b| *b == b'\n').map(|p| p + 1).unwrap_or(0);
    let col = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, col)
}

/// A single problem as a miette diagnostic.
#[derive(Debug)]
pub struct ProblemDiagnostic {
    problem: Problem,
    source: NamedSource<Arc<String>>,
}

impl std::fmt::Display for ProblemDiagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problem.message)
    }
}

impl std::error::Error for ProblemDiagnostic {}

impl Diagnostic for ProblemDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        None
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.problem
            .help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.problem.span.clone()?;
        let len = span.end.saturating_sub(span.start);
        Some(Box::new(std::iter::once(LabeledSpan::new(
            Some(self.problem.label.clone().unwrap_or_else(|| "here".into())),
            span.start,
            len,
        ))))
    }
}

/// The closest candidate by edit distance, if close enough to be a plausible typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_col("a\nbc\n", 0), (1, 1));
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
        assert_eq!(line_col("a", 99), (1, 2));
    }

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(did_you_mean("rol", ["name", "role", "labels"]), Some("role"));
        assert_eq!(did_you_mean("zzzz", ["name", "role"]), None);
    }
}
