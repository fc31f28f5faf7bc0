//! Failure modes the fake ERP can be told to simulate (`--fail ...`).

use std::fmt;
use std::str::FromStr;

use fake_mssql::Fault;

/// A fault the fake ERP injects, so the sync can be tested against a misbehaving server.
///
/// The textual form (used by `--fail`) round-trips through [`FromStr`] and [`Display`](fmt::Display):
///
/// | spelling          | effect |
/// |-------------------|--------|
/// | `login`           | every login is refused with SQL Server error 18456 |
/// | `tls`             | the TLS handshake is aborted after the client's hello |
/// | `sql`             | the open-orders query fails with error 50000 (`SELECT 1` still works) |
/// | `drop-after:N`    | metadata and `N` rows are sent, then the TCP connection is closed without `DONE` |
/// | `stall`           | the open-orders query is read but never answered |
/// | `stall-after:N`   | `N` rows are sent, then the server goes silent (socket stays open) |
/// | `null-at:N`       | row `N` (0-based) has `NULL` in the required `customer_code` column |
/// | `overflow-at:N`   | `unit_price` is declared `decimal(38,4)` and row `N` holds 10^30 |
/// | `wrong-type`      | `qty_open` is sent as `nvarchar` instead of `decimal` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// A fault of the SQL Server itself (`login`, `tls`, `drop-after:N`, `stall`,
    /// `stall-after:N`): see [`Fault`].
    Server(Fault),
    /// Answer the open-orders query with SQL error 50000 (severity 16); `SELECT 1` and the
    /// session statements still work.
    Sql,
    /// The row with this 0-based index has `NULL` in `customer_code`.
    NullAt(u64),
    /// `unit_price` is declared `decimal(38,4)`; the row with this 0-based index holds 10^30,
    /// which does not fit `rust_decimal::Decimal` (28 digits).
    OverflowAt(u64),
    /// `qty_open` is sent as `nvarchar(40)` text instead of `decimal(18,4)`.
    WrongType,
}

/// The error returned when a `--fail` value cannot be parsed into a [`Failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFailureError {
    input: String,
    reason: String,
}

impl fmt::Display for ParseFailureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid failure mode {:?}: {}; expected one of login, tls, sql, drop-after:N, stall, \
             stall-after:N, null-at:N, overflow-at:N, wrong-type",
            self.input, self.reason
        )
    }
}

impl std::error::Error for ParseFailureError {}

impl FromStr for Failure {
    type Err = ParseFailureError;

    /// The view's own modes (`sql`, `null-at:N`, `overflow-at:N`, `wrong-type`) here; the
    /// server's (`login`, `tls`, `drop-after:N`, `stall`, `stall-after:N`) through
    /// [`fake_mssql::Fault`]'s parser.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ParseFailureError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let spec = fake_mssql::ModeSpec::parse(s);
        let count = || spec.count().map_err(err);
        let no_arg = |value: Failure| spec.no_arg(value).map_err(err);
        match spec.name() {
            "sql" => no_arg(Failure::Sql),
            "wrong-type" => no_arg(Failure::WrongType),
            "null-at" => Ok(Failure::NullAt(count()?)),
            "overflow-at" => Ok(Failure::OverflowAt(count()?)),
            _ => match s.parse::<Fault>() {
                Ok(fault) => Ok(Failure::Server(fault)),
                Err(e) => Err(ParseFailureError {
                    input: s.to_owned(),
                    reason: e.reason().to_owned(),
                }),
            },
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Server(fault) => fault.fmt(f),
            Failure::Sql => f.write_str("sql"),
            Failure::NullAt(n) => write!(f, "null-at:{n}"),
            Failure::OverflowAt(n) => write!(f, "overflow-at:{n}"),
            Failure::WrongType => f.write_str("wrong-type"),
        }
    }
}

impl Failure {
    /// The part of the fault the SQL Server itself injects (the rest is in the view's rows).
    pub(crate) fn server_fault(self) -> Option<Fault> {
        match self {
            Failure::Server(fault) => Some(fault),
            Failure::Sql | Failure::NullAt(_) | Failure::OverflowAt(_) | Failure::WrongType => None,
        }
    }
}

/// How the view's rows deviate from the real view because of a [`Failure`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Quirks {
    /// Row index whose `customer_code` is NULL.
    pub(crate) null_at: Option<u64>,
    /// Row index whose `unit_price` is 10^30 (column declared decimal(38,4)).
    pub(crate) overflow_at: Option<u64>,
    /// `qty_open` sent as nvarchar.
    pub(crate) wrong_type: bool,
}

impl Quirks {
    pub(crate) fn for_failure(failure: Option<Failure>) -> Self {
        match failure {
            Some(Failure::NullAt(n)) => Quirks {
                null_at: Some(n),
                ..Quirks::default()
            },
            Some(Failure::OverflowAt(n)) => Quirks {
                overflow_at: Some(n),
                ..Quirks::default()
            },
            Some(Failure::WrongType) => Quirks {
                wrong_type: true,
                ..Quirks::default()
            },
            _ => Quirks::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_round_trips() {
        let all = [
            Failure::Server(Fault::Login),
            Failure::Server(Fault::Tls),
            Failure::Sql,
            Failure::Server(Fault::DropAfter(500)),
            Failure::Server(Fault::Stall),
            Failure::Server(Fault::StallAfter(0)),
            Failure::NullAt(7),
            Failure::OverflowAt(12_345),
            Failure::WrongType,
        ];
        for failure in all {
            let text = failure.to_string();
            assert_eq!(text.parse::<Failure>(), Ok(failure), "{text}");
        }
    }

    #[test]
    fn parsing_is_lenient_about_case_and_spaces() {
        assert_eq!(
            " Drop-After: 3 ".parse(),
            Ok(Failure::Server(Fault::DropAfter(3)))
        );
        assert_eq!("WRONG-TYPE".parse(), Ok(Failure::WrongType));
    }

    #[test]
    fn bad_spellings_are_rejected_with_a_helpful_message() {
        for bad in [
            "",
            "drop",
            "drop-after",
            "drop-after:",
            "drop-after:x",
            "login:3",
            "null-at:-1",
        ] {
            let err = bad.parse::<Failure>().expect_err(bad);
            assert!(err.to_string().contains("drop-after:N"), "{err}");
        }
    }
}
