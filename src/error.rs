//! The one error type of the library: a status code for the program and a sentence for the person.

use std::fmt;

/// The result of every fallible function.
///
/// The numbers are part of the ABI: a number is never reused or renumbered, new codes are only
/// ever added. `DEFENDER_STATUS_OK` (0) means success; every other value means the call failed,
/// wrote none of its out-parameters, and left a message for `defender_last_error_message`.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefenderStatus {
    /// Done.
    Ok = 0,
    /// A required pointer was NULL, a string was not UTF-8, an option's value was malformed, or
    /// the library was called from inside one of its own callbacks.
    InvalidArgument = 1,
    /// The machine action exists but its package is not ready yet (Pending / InProgress).
    NotReady = 2,
    /// No such machine action (or machine).
    NotFound = 3,
    /// HTTP 401, or the sign-in endpoint refused the credentials.
    Unauthorized = 4,
    /// HTTP 403: the app or user lacks the permission or the device-group access.
    Forbidden = 5,
    /// Still HTTP 429 after the retry budget.
    RateLimited = 6,
    /// Any other unexpected HTTP status.
    Http = 7,
    /// DNS, connect, TLS, connection reset.
    Network = 8,
    /// A time limit ran out.
    Timeout = 9,
    /// The local file system failed.
    Io = 10,
    /// The body was shorter or longer than announced, failed its checksum, or is not a ZIP.
    Integrity = 11,
    /// The progress callback asked to stop, or `defender_client_cancel` was called.
    Cancelled = 12,
    /// The collection ended Failed, TimeOut or Cancelled: no package will come.
    ActionFailed = 13,
    /// The service answered something that cannot be understood.
    Protocol = 14,
    /// The destination file exists and the `overwrite` option is not `true`.
    Exists = 15,
    /// `defender_client_set` was given a key it does not have (`defender_option_name` lists them).
    UnknownOption = 16,
    /// A bug in the library: a caught panic. Please report it with the message.
    Internal = 99,
}

impl DefenderStatus {
    /// The name without its `DEFENDER_STATUS_` prefix, as results in JSON spell it: `"NOT_READY"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::NotReady => "NOT_READY",
            Self::NotFound => "NOT_FOUND",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::RateLimited => "RATE_LIMITED",
            Self::Http => "HTTP",
            Self::Network => "NETWORK",
            Self::Timeout => "TIMEOUT",
            Self::Io => "IO",
            Self::Integrity => "INTEGRITY",
            Self::Cancelled => "CANCELLED",
            Self::ActionFailed => "ACTION_FAILED",
            Self::Protocol => "PROTOCOL",
            Self::Exists => "EXISTS",
            Self::UnknownOption => "UNKNOWN_OPTION",
            Self::Internal => "INTERNAL",
        }
    }

    /// Every status, in number order. Rust only: not in the header, whose C has no such names.
    ///
    /// cbindgen:ignore
    pub const ALL: [Self; 18] = [
        Self::Ok,
        Self::InvalidArgument,
        Self::NotReady,
        Self::NotFound,
        Self::Unauthorized,
        Self::Forbidden,
        Self::RateLimited,
        Self::Http,
        Self::Network,
        Self::Timeout,
        Self::Io,
        Self::Integrity,
        Self::Cancelled,
        Self::ActionFailed,
        Self::Protocol,
        Self::Exists,
        Self::UnknownOption,
        Self::Internal,
    ];
}

/// A failure: what the caller gets as a status plus one readable sentence.
///
/// Messages are written by the code that knows what failed; they never hold a secret.
/// `crate::redact` scrubs them once more at the boundary as a second line of defence.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Error {
    status: DefenderStatus,
    message: String,
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(status: DefenderStatus, message: impl Into<String>) -> Self {
        debug_assert_ne!(status, DefenderStatus::Ok, "an error needs a failure status");
        Self { status, message: message.into() }
    }

    pub(crate) fn status(&self) -> DefenderStatus {
        self.status
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// Puts what was being done in front of the message: "downloading X: <message>".
    pub(crate) fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(DefenderStatus::InvalidArgument, message)
    }

    pub(crate) fn cancelled() -> Self {
        Self::new(DefenderStatus::Cancelled, "the call was cancelled")
    }

    pub(crate) fn io(what: impl fmt::Display, err: &std::io::Error) -> Self {
        Self::new(DefenderStatus::Io, format!("{what}: {err}"))
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::new(DefenderStatus::Protocol, message)
    }

    pub(crate) fn integrity(message: impl Into<String>) -> Self {
        Self::new(DefenderStatus::Integrity, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(DefenderStatus::Internal, message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.status, self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::DefenderStatus;

    /// `ALL` and `name` against the header that C, C# and PowerShell read: a status added to the
    /// enum but not to `ALL` would have no name for `defender_status_name`.
    #[test]
    fn every_status_of_the_header_is_in_all_with_its_name() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("include/defender.h");
        let header = std::fs::read_to_string(path).unwrap();
        let enumerators: Vec<(String, i32)> = header
            .lines()
            .filter_map(|line| line.trim().strip_prefix("DEFENDER_STATUS_")?.trim_end_matches(',').split_once(" = "))
            .map(|(name, number)| (name.to_owned(), number.parse().unwrap()))
            .collect();
        let ours: Vec<(String, i32)> =
            DefenderStatus::ALL.iter().map(|status| (status.name().to_owned(), *status as i32)).collect();
        assert_eq!(ours, enumerators);
        assert!(ours.is_sorted_by_key(|(_, number)| *number), "ALL is in number order");
    }
}
