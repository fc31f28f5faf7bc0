//! Run status and detail level.

use std::fmt;
use std::str::FromStr;

/// Where a run is in its life: new → processing → success / error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunStatus {
    /// Created, not started yet (`0`).
    New,
    /// Doing its work (`1`).
    Processing,
    /// Finished well (`2`).
    Success,
    /// Failed, was dropped unfinished, or was abandoned (`3`).
    Error,
}

impl RunStatus {
    /// All statuses, in their numeric order.
    pub const ALL: [RunStatus; 4] = [Self::New, Self::Processing, Self::Success, Self::Error];

    /// The value stored in `job_logs.status`.
    pub fn code(self) -> i16 {
        match self {
            Self::New => 0,
            Self::Processing => 1,
            Self::Success => 2,
            Self::Error => 3,
        }
    }

    /// The status stored as `code`, if it is one.
    pub fn from_code(code: i16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Lower-case name: `new`, `processing`, `success`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Processing => "processing",
            Self::Success => "success",
            Self::Error => "error",
        }
    }

    /// Whether the run has ended (success or error).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Success | Self::Error)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`RunStatus`] or a [`Level`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct ParseError {
    kind: &'static str,
    value: String,
}

impl FromStr for RunStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseError {
                kind: "status",
                value: s.to_owned(),
            })
    }
}

/// How important a detail line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Level {
    /// A step of the job (the default).
    #[default]
    Info,
    /// Something worth a look that did not stop the job.
    Warn,
    /// The reason a run failed.
    Error,
}

impl Level {
    /// Lower-case name as stored in `job_log_details.level`: `info`, `warn`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "info" => Ok(Self::Info),
            "warn" | "warning" => Ok(Self::Warn),
            "error" => Ok(Self::Error),
            _ => Err(ParseError {
                kind: "level",
                value: s.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::from_code(s.code()), Some(s));
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
        }
        assert_eq!(RunStatus::from_code(7), None);
        assert!("finished".parse::<RunStatus>().is_err());
        assert_eq!("WARNING".parse::<Level>().unwrap(), Level::Warn);
    }
}
