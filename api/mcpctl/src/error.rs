//! One error type whose exit code scripts can rely on.

use std::fmt;

/// The process exit codes, documented in `mcpctl --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; a watched task or execution completed; every batch line was accepted.
    Ok = 0,
    /// The operation failed or was refused: a task or execution ended failed, dead or cancelled,
    /// batch lines were rejected, or the server answered 400/409/413/422.
    Failed = 1,
    /// Bad command line or configuration.
    Usage = 2,
    /// Not logged in, bad credentials, expired session, or not permitted (401/403).
    Auth = 3,
    /// The task, execution or route does not exist (404).
    NotFound = 4,
    /// The server failed (5xx, 429 after retries) or could not be reached.
    Server = 5,
}

#[derive(Debug)]
pub struct Error {
    pub exit: Exit,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Exit::Failed, message)
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(Exit::Auth, message)
    }

    pub fn server(message: impl Into<String>) -> Self {
        Self::new(Exit::Server, message)
    }

    /// The exit code an HTTP error status maps to.
    pub fn exit_for_status(status: u16) -> Exit {
        match status {
            401 | 403 => Exit::Auth,
            404 => Exit::NotFound,
            429 | 500.. => Exit::Server,
            _ => Exit::Failed,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_documented_exit_codes() {
        assert_eq!(Error::exit_for_status(401), Exit::Auth);
        assert_eq!(Error::exit_for_status(403), Exit::Auth);
        assert_eq!(Error::exit_for_status(404), Exit::NotFound);
        assert_eq!(Error::exit_for_status(422), Exit::Failed);
        assert_eq!(Error::exit_for_status(409), Exit::Failed);
        assert_eq!(Error::exit_for_status(429), Exit::Server);
        assert_eq!(Error::exit_for_status(503), Exit::Server);
    }
}
