//! The command's failures and their exit codes.

use std::fmt;
use std::path::{Path, PathBuf};

use oncely::ErrorCode;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// oncely refused or failed, on the store at `path` when there is one.
    Oncely { path: Option<PathBuf>, error: oncely::Error },
    /// A plain failure (missing file, unknown id, I/O).
    Failed(String),
    /// The arguments are wrong in a way clap cannot tell.
    Usage(String),
}

impl CliError {
    /// oncely's `error` on the store at `path`.
    pub fn store(path: &Path, error: oncely::Error) -> Self {
        CliError::Oncely { path: Some(path.to_path_buf()), error }
    }

    /// 2 for usage errors and stores that are not usable oncely stores, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Oncely { error, .. } if error.code() == ErrorCode::CorruptStore => 2,
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Oncely { path: Some(path), error } => {
                let shown = oncely::store::postgres::redact(&path.to_string_lossy());
                write!(f, "error[{}]: {shown}: {error}", error.code())
            }
            CliError::Oncely { path: None, error } => write!(f, "error[{}]: {error}", error.code()),
            CliError::Failed(msg) => write!(f, "error: {msg}"),
            CliError::Usage(msg) => write!(f, "error: {msg}\n\nFor more information, try '--help'."),
        }
    }
}

impl From<oncely::Error> for CliError {
    fn from(error: oncely::Error) -> Self {
        CliError::Oncely { path: None, error }
    }
}

impl From<oncely::rusqlite::Error> for CliError {
    fn from(e: oncely::rusqlite::Error) -> Self {
        CliError::Failed(format!("SQLite: {e}"))
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Failed(e.to_string())
    }
}
