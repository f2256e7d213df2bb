//! What the client commands (`sluice topic|group|produce|consume|config`) print, and
//! how they fail.
//!
//! Standard output is written only through [`Out`], never with `println!`: when the
//! reader goes away early (`| head`, `less` quitting, `grep -m 1`) the next write
//! fails with `EPIPE` (Rust ignores `SIGPIPE`), `println!` would panic, and a plain
//! error would print a line nobody asked for. [`Out`] remembers that the reader is
//! gone and drops what is written after, so a command still does all it was asked
//! (a reset is still committed after its table was cut short) and exits with status
//! 0, as `cat` and `kcat` do; commands that would print forever (`consume`) stop
//! when [`Out::closed`] says so.

use std::fmt;
use std::io::Write;

/// Why a client command failed: printed on stderr as `sluice: ...`, exit status 1.
#[derive(Debug)]
pub enum CliError {
    Failed(String),
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
        }
    }
}

/// Standard output, locked for the command's lifetime (line-buffered, as Rust's
/// stdout is). Write with [`outln!`].
pub struct Out {
    stdout: std::io::StdoutLock<'static>,
    /// The reader went away: what is written now is dropped.
    closed: bool,
}

impl Out {
    pub fn new() -> Out {
        Out {
            stdout: std::io::stdout().lock(),
            closed: false,
        }
    }

    /// Writes formatted text (use [`outln!`]); nothing once the reader is gone.
    pub fn write(&mut self, args: fmt::Arguments<'_>) -> CliResult<()> {
        if self.closed {
            return Ok(());
        }
        let written = self.stdout.write_fmt(args);
        self.check(written)
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> CliResult<()> {
        if self.closed {
            return Ok(());
        }
        let flushed = self.stdout.flush();
        self.check(flushed)
    }

    /// Whether the reader has gone away (nothing more will be shown).
    pub fn closed(&self) -> bool {
        self.closed
    }

    fn check(&mut self, r: std::io::Result<()>) -> CliResult<()> {
        match r {
            Ok(()) => Ok(()),
            Err(e) if is_closed_reader(&e) => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(CliError::Failed(format!("writing standard output: {e}"))),
        }
    }
}

/// A write failed because whoever read standard output closed it (`| head`).
pub fn is_closed_reader(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
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
    fn only_a_closed_reader_is_taken_for_one() {
        assert!(is_closed_reader(&std::io::Error::from(
            std::io::ErrorKind::BrokenPipe
        )));
        assert!(!is_closed_reader(&std::io::Error::from_raw_os_error(28)));
    }
}
