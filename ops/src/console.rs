//! What the client commands (`sluice topic|group|produce|consume|config`) print, and
//! how they fail.
//!
//! Standard output is written only through [`Out`], never with `println!`: when the
//! reader goes away early (`| head`, `less` quitting, `grep -m 1`) the next write
//! fails with `EPIPE` (Rust ignores `SIGPIPE`), `println!` would panic, and a plain
//! error would print a line nobody asked for. [`Out`] turns that one error into
//! [`CliError::OutputClosed`], which ends the command quietly with status 0, as
//! `cat` and `kcat` end.

use std::fmt;
use std::io::Write;

/// Why a client command stopped.
#[derive(Debug)]
pub enum CliError {
    /// Something went wrong: printed on stderr as `sluice: ...`, exit status 1.
    Failed(String),
    /// Whoever read our standard output closed it: not an error, the command just
    /// ends (exit status 0, nothing on stderr).
    OutputClosed,
}

/// A client command's result.
pub type CliResult<T> = Result<T, CliError>;

impl From<String> for CliError {
    fn from(s: String) -> Self {
        CliError::Failed(s)
    }
}

impl From<&str> for CliError {
    fn from(s: &str) -> Self {
        CliError::Failed(s.to_string())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Failed(s) => f.write_str(s),
            CliError::OutputClosed => f.write_str("standard output closed"),
        }
    }
}

/// Standard output, locked for the command's lifetime (line-buffered, as Rust's
/// stdout is). Write with [`outln!`].
pub struct Out {
    stdout: std::io::StdoutLock<'static>,
}

impl Out {
    pub fn new() -> Out {
        Out {
            stdout: std::io::stdout().lock(),
        }
    }

    /// Writes formatted text (use [`outln!`]).
    pub fn write(&mut self, args: fmt::Arguments<'_>) -> CliResult<()> {
        self.stdout.write_fmt(args).map_err(stdout_error)
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> CliResult<()> {
        self.stdout.flush().map_err(stdout_error)
    }

    /// The raw writer, for code that writes with `std::io::Write`; map its errors
    /// with [`stdout_error`].
    pub fn raw(&mut self) -> &mut impl Write {
        &mut self.stdout
    }
}

/// A failed write to standard output: a closed reader ends the command quietly,
/// anything else (a full disk behind a redirection) is an error. By value, to be
/// `map_err(stdout_error)`.
#[allow(clippy::needless_pass_by_value)]
pub fn stdout_error(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::OutputClosed
    } else {
        CliError::Failed(format!("writing standard output: {e}"))
    }
}

/// `outln!(out, "...", args)`: one line to [`Out`], `?`-able.
macro_rules! outln {
    ($out:expr) => {
        $out.write(format_args!("\n"))
    };
    ($out:expr, $($arg:tt)*) => {
        $out.write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_not_an_error_but_other_failures_are() {
        let closed = stdout_error(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(matches!(closed, CliError::OutputClosed));
        let full = stdout_error(std::io::Error::from_raw_os_error(28));
        match full {
            CliError::Failed(m) => assert!(m.contains("writing standard output"), "{m}"),
            CliError::OutputClosed => panic!("ENOSPC taken for a closed reader"),
        }
    }
}
