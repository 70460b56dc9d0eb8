//! How commands fail, and the exit code each failure maps to.

use std::fmt;

/// Exit code for success.
pub const OK: u8 = 0;
/// Exit code for a failure that is not the user's input.
pub const FAILURE: u8 = 1;
/// Exit code for an invalid configuration file or invalid usage.
pub const INVALID: u8 = 2;

/// A command's failure.
#[derive(Debug)]
pub enum Failure {
    /// The user's input (arguments, configuration) is wrong; exit 2.
    Invalid(String),
    /// Problems were already printed in full; exit 2 without more text.
    Reported,
    /// The reader of stdout went away (`mse list | head -1`): nothing more
    /// can be said, and nothing went wrong; exit 0 without a word.
    ClosedOutput,
    /// Anything else; exit 1.
    Other(anyhow::Error),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Invalid(_) | Failure::Reported => INVALID,
            Failure::ClosedOutput => OK,
            Failure::Other(_) => FAILURE,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Invalid(message) => f.write_str(message),
            Failure::Reported | Failure::ClosedOutput => Ok(()),
            Failure::Other(error) => write!(f, "{error:#}"),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Other(error)
    }
}

impl From<crate::api::ApiError> for Failure {
    fn from(error: crate::api::ApiError) -> Self {
        Failure::Other(error.into())
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Failure::Other(error.into())
    }
}

/// Result of a command.
pub type CmdResult = Result<(), Failure>;
