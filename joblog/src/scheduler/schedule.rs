//! When a job is due: a fixed interval or a 5-field cron expression in a timezone.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::{Error, Result};

/// When a scheduled job is due.
///
/// ```
/// use std::time::Duration;
/// use joblog::scheduler::{Schedule, Tz};
///
/// assert_eq!(Schedule::every(Duration::from_secs(300)).describe(), "every 5 minutes");
/// let cron = Schedule::cron("*/5 * * * *", Tz::Europe__Berlin).unwrap();
/// assert!(cron.describe().starts_with("cron */5 * * * * (Europe/Berlin)"));
/// assert!(Schedule::cron("*/5 * * *", Tz::UTC).is_err());
/// ```
#[derive(Clone)]
pub struct Schedule {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Every(Duration),
    Cron { expr: String, tz: Tz, cron: Box<Cron> },
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Schedule {
    /// Every `interval` (at least 1 ms), counted from the previous due time.
    pub fn every(interval: Duration) -> Self {
        Self {
            kind: Kind::Every(interval.max(Duration::from_millis(1))),
        }
    }

    /// A standard 5-field cron expression (minute hour day-of-month month day-of-week),
    /// evaluated in `tz`. An error ([`Error::Config`]) says what is wrong with it.
    pub fn cron(expr: &str, tz: Tz) -> Result<Self> {
        let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let fields = expr.split(' ').filter(|f| !f.is_empty()).count();
        if fields != 5 && !expr.starts_with('@') {
            return Err(Error::Config(format!(
                "invalid cron expression {expr:?}: expected 5 fields (minute hour day-of-month month \
                 day-of-week), found {fields}"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&expr)
            .map_err(|e| Error::Config(format!("invalid cron expression {expr:?}: {e}")))?;
        // A pattern that never matches (e.g. 30 February) is refused up front.
        let probe = Utc::now().with_timezone(&tz);
        cron.find_next_occurrence(&probe, false)
            .map_err(|e| Error::Config(format!("cron expression {expr:?} never matches: {e}")))?;
        Ok(Self {
            kind: Kind::Cron {
                expr,
                tz,
                cron: Box::new(cron),
            },
        })
    }

    /// Parses the stored form written by `Display` (`every 300000ms`,
    /// `cron */5 * * * * Europe/Berlin`).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("every ") {
            let ms = rest
                .trim()
                .strip_suffix("ms")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .ok_or_else(|| Error::Config(format!("invalid schedule {text:?}")))?;
            return Ok(Self::every(Duration::from_millis(ms)));
        }
        if let Some(rest) = text.strip_prefix("cron ") {
            let (expr, tz) = rest
                .trim()
                .rsplit_once(' ')
                .ok_or_else(|| Error::Config(format!("invalid schedule {text:?}")))?;
            let tz: Tz = tz
                .parse()
                .map_err(|_| Error::Config(format!("invalid timezone in schedule {text:?}")))?;
            return Self::cron(expr, tz);
        }
        Err(Error::Config(format!("invalid schedule {text:?}")))
    }

    /// The schedule in words: `every 5 minutes`, `every 30 seconds`,
    /// `cron */5 * * * * (Europe/Berlin): Every 5 minutes`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Every(d) => format!("every {}", crate::format::interval(*d)),
            Kind::Cron { expr, tz, cron } => {
                format!("cron {expr} ({}): {}", tz.name(), cron.describe())
            }
        }
    }

    /// The first due time strictly after `after`. `None` if there is none (a cron
    /// pattern that no longer matches within croner's search limit).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| after.checked_add_signed(d)),
            Kind::Cron { tz, cron, .. } => cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }

    /// The due time that follows `due` once it has been taken at `now`: the first point of
    /// the schedule after `now` (an interval keeps its grid: `due + k × interval`), so
    /// that however late the job ran, at most one catch-up occurrence is ever run.
    pub(crate) fn next_due_after(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if let Kind::Every(d) = &self.kind
            && due <= now
        {
            let step = i64::try_from(d.as_micros().max(1)).unwrap_or(i64::MAX);
            let behind = (now - due).num_microseconds().unwrap_or(i64::MAX);
            let k = (behind / step).saturating_add(1);
            return due.checked_add_signed(chrono::Duration::microseconds(k.saturating_mul(step)));
        }
        self.next_after(due.max(now))
    }

    /// The gap between two consecutive due times: the interval, or for a cron schedule
    /// the gap between its next two occurrences after `at`.
    pub fn interval_at(&self, at: DateTime<Utc>) -> Duration {
        match &self.kind {
            Kind::Every(d) => *d,
            Kind::Cron { .. } => self
                .next_after(at)
                .and_then(|a| self.next_after(a).map(|b| (b - a).to_std().unwrap_or_default()))
                .unwrap_or_default(),
        }
    }

    /// How many due times lie in `(from, to]`, counting at most `cap`.
    pub(crate) fn count_between(&self, from: DateTime<Utc>, to: DateTime<Utc>, cap: u64) -> u64 {
        if to <= from {
            return 0;
        }
        if let Kind::Every(d) = &self.kind {
            let span = (to - from).to_std().unwrap_or_default().as_micros();
            let step = d.as_micros().max(1);
            return u64::try_from(span / step).unwrap_or(u64::MAX).min(cap);
        }
        let mut n = 0;
        let mut t = from;
        while n < cap {
            match self.next_after(t) {
                Some(next) if next <= to => {
                    n += 1;
                    t = next;
                }
                _ => break,
            }
        }
        n
    }
}

/// The stored, parseable form (see [`Schedule::parse`]).
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Every(d) => write!(f, "every {}ms", d.as_millis()),
            Kind::Cron { expr, tz, .. } => write!(f, "cron {expr} {}", tz.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(
            Schedule::every(Duration::from_secs(300)).describe(),
            "every 5 minutes"
        );
        assert_eq!(
            Schedule::every(Duration::from_secs(30)).describe(),
            "every 30 seconds"
        );
        assert_eq!(
            Schedule::every(Duration::from_secs(3600)).describe(),
            "every hour"
        );
        assert_eq!(
            Schedule::every(Duration::from_millis(1500)).describe(),
            "every 1500 milliseconds"
        );
    }

    #[test]
    fn round_trip_and_intervals() {
        let s = Schedule::cron("*/5  * * * *", Tz::Europe__Berlin).unwrap();
        assert_eq!(s.to_string(), "cron */5 * * * * Europe/Berlin");
        assert_eq!(Schedule::parse(&s.to_string()).unwrap(), s);
        assert_eq!(s.interval_at(Utc::now()), Duration::from_secs(300));
        let e = Schedule::every(Duration::from_millis(300));
        assert_eq!(Schedule::parse(&e.to_string()).unwrap(), e);
        let t0 = Utc::now();
        assert_eq!(
            e.count_between(t0, t0 + chrono::Duration::milliseconds(950), 100),
            3
        );
    }
}
