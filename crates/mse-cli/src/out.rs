//! Standard output. Commands write through `out!` and `outln!`, which
//! return an error where `print!` would panic: when the reader went away
//! (`mse list | head -1`), the write fails with [`Failure::ClosedOutput`],
//! and `main` ends the command quietly with exit code 0.

use std::fmt;
use std::io::{self, Write as _};

use anyhow::anyhow;

use crate::exit::Failure;

/// `print!` that returns a [`Failure`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write_fmt(format_args!($($arg)*))
    };
}

/// `println!` that returns a [`Failure`] instead of panicking.
macro_rules! outln {
    () => {
        $crate::out::write_fmt(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes formatted text to stdout.
pub fn write_fmt(args: fmt::Arguments<'_>) -> Result<(), Failure> {
    io::stdout().lock().write_fmt(args).map_err(failure)
}

/// Writes text to stdout and flushes it, so that a reader sees it at once
/// (a followed log).
pub fn write_now(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(failure)
}

/// What a failed write to stdout means: a closed pipe ends the command, any
/// other error is one.
fn failure(error: io::Error) -> Failure {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Failure::ClosedOutput
    } else {
        Failure::Other(anyhow!("cannot write to the standard output: {error}"))
    }
}
