//! Standard output of the commands that print as messages arrive (`sub`, `req`, `tap`): a line at a time, and a
//! reader that went away (`gatewayctl sub … | head -1`) ends the command quietly, where `println!` would panic.

use std::fmt::Display;
use std::io::{ErrorKind, Write as _};

/// Standard output's reader closed the pipe; `main` treats it as a normal end.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct Closed;

/// Writes `text` and a newline to standard output.
pub fn line(text: impl Display) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Err(Closed.into()),
        Err(error) => Err(error.into()),
    }
}
