//! Whether output may carry colour (escape codes): `--color`, then `NO_COLOR`
//! (<https://no-color.org>: set and not empty) and `TERM=dumb`, then whether the stream
//! is a terminal. Set once by the command line; every writer of styled output asks here.

use std::io::IsTerminal;
use std::sync::OnceLock;

/// `--color`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal, unless NO_COLOR is set or TERM is dumb.
    #[default]
    Auto,
    Always,
    Never,
}

static CHOICE: OnceLock<ColorChoice> = OnceLock::new();

/// Records the command line's choice (the first call wins).
pub fn set(choice: ColorChoice) {
    let _ = CHOICE.set(choice);
}

/// Whether a stream that is (or is not) a terminal may get colour.
pub fn enabled(is_terminal: bool) -> bool {
    match CHOICE.get().copied().unwrap_or_default() {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
        }
    }
}

/// Whether standard error may get colour.
pub fn stderr() -> bool {
    enabled(std::io::stderr().is_terminal())
}

/// Whether standard output may get colour.
pub fn stdout() -> bool {
    enabled(std::io::stdout().is_terminal())
}
