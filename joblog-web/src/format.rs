//! Times and durations as people read them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// `2026-11-28 21:30:05 CET`.
pub(crate) fn time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string()
}

/// `21:30:05.123` (a log line's time).
pub(crate) fn clock(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%H:%M:%S%.3f").to_string()
}

/// `850 ms`, `12s`, `1m 03s`, `2h 05m`, `3d 04h`.
pub(crate) fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{} ms", d.as_millis()),
        1..=59 => format!("{s}s"),
        60..=3_599 => format!("{}m {:02}s", s / 60, s % 60),
        3_600..=86_399 => format!("{}h {:02}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_secs(12)), "12s");
        assert_eq!(duration(Duration::from_secs(63)), "1m 03s");
        assert_eq!(duration(Duration::from_secs(7_500)), "2h 05m");
        assert_eq!(duration(Duration::from_secs(3 * 86_400 + 4 * 3_600)), "3d 04h");
    }

    #[test]
    fn times_carry_their_zone() {
        let t = DateTime::parse_from_rfc3339("2026-11-28T20:30:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(time(t, Tz::UTC), "2026-11-28 20:30:05 UTC");
        assert_eq!(time(t, chrono_tz::Europe::Berlin), "2026-11-28 21:30:05 CET");
    }
}
