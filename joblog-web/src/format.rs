//! Times as people read them (durations and counts are `joblog::format`'s).

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

/// `2026-11-28 21:30:05 CET`.
pub(crate) fn time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string()
}

/// `21:30:05.123` (a log line's time).
pub(crate) fn clock(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%H:%M:%S%.3f").to_string()
}

/// `45 s`, `17 min`, `3 h`, `2 d`: how long ago, roughly (one unit, rounded down), as the
/// missed-run warnings say it.
pub(crate) fn ago(d: TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3_599 => format!("{} min", s / 60),
        3_600..=86_399 => format!("{} h", s / 3_600),
        _ => format!("{} d", s / 86_400),
    }
}

/// The warning of a scheduled job that stopped succeeding: `last success 17 min ago — 3
/// runs missed`.
pub(crate) fn missed(last_success: Option<DateTime<Utc>>, missed: u64, now: DateTime<Utc>) -> String {
    let runs = if missed == 1 { "run" } else { "runs" };
    match last_success {
        Some(t) => format!("last success {} ago — {missed} {runs} missed", ago(now - t)),
        None => format!("never succeeded — {missed} {runs} missed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_carry_their_zone() {
        let t = DateTime::parse_from_rfc3339("2026-11-28T20:30:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(time(t, Tz::UTC), "2026-11-28 20:30:05 UTC");
        assert_eq!(time(t, chrono_tz::Europe::Berlin), "2026-11-28 21:30:05 CET");
        assert_eq!(clock(t, Tz::UTC), "20:30:05.000");
    }

    #[test]
    fn ago_is_rough() {
        assert_eq!(ago(TimeDelta::seconds(45)), "45 s");
        assert_eq!(ago(TimeDelta::seconds(17 * 60 + 59)), "17 min");
        assert_eq!(ago(TimeDelta::hours(3)), "3 h");
        assert_eq!(ago(TimeDelta::days(2)), "2 d");
        assert_eq!(ago(TimeDelta::seconds(-5)), "0 s");
    }

    #[test]
    fn missed_runs_read_well() {
        let now = Utc::now();
        assert_eq!(
            missed(Some(now - TimeDelta::minutes(17)), 3, now),
            "last success 17 min ago — 3 runs missed"
        );
        assert_eq!(missed(None, 1, now), "never succeeded — 1 run missed");
    }
}
