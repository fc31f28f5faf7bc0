//! Durations, intervals and counts as people read them — one style for the pages, the CLI and the
//! run details.
//!
//! ```
//! use std::time::Duration;
//! use joblog::format::{count, duration};
//!
//! assert_eq!(duration(Duration::from_millis(850)), "850ms");
//! assert_eq!(duration(Duration::from_millis(3_210)), "3.21s");
//! assert_eq!(duration(Duration::from_secs(300)), "5m");
//! assert_eq!(duration(Duration::from_secs(63)), "1m 3s");
//! assert_eq!(count(1_234_567), "1,234,567");
//! ```

use std::time::Duration;

/// A duration in at most two units, exact for round values:
/// `850ms`, `3.21s`, `12s`, `1m 3s`, `5m`, `2h 5m`, `1h`, `3d 4h`.
///
/// Under a second it is whole milliseconds; under ten seconds, seconds with up to two
/// decimals; above, whole seconds (rounded down) in the two largest units that apply,
/// dropping a zero second unit (`5m`, not `5m 0s`).
#[must_use]
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if ms < 10_000 {
        let hundredths = ms / 10;
        let (whole, frac) = (hundredths / 100, hundredths % 100);
        return match frac {
            0 => format!("{whole}s"),
            f if f % 10 == 0 => format!("{whole}.{}s", f / 10),
            f => format!("{whole}.{f:02}s"),
        };
    }
    let s = d.as_secs();
    let units: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let Some(first) = units.iter().position(|&(size, _)| s >= size) else {
        return format!("{s}s");
    };
    let (big, big_name) = units[first];
    let mut out = format!("{}{big_name}", s / big);
    if let Some(&(small, small_name)) = units.get(first + 1) {
        let rest = s % big / small;
        if rest > 0 {
            out.push_str(&format!(" {rest}{small_name}"));
        }
    }
    out
}

/// An interval in words, for schedules: `5 minutes`, `30 seconds`, `hour`, `2 days`,
/// `1500 milliseconds` — the largest unit that divides it exactly (`every {interval}`).
#[must_use]
pub fn interval(d: Duration) -> String {
    let ms = d.as_millis();
    let units: [(u128, &str); 5] = [
        (86_400_000, "day"),
        (3_600_000, "hour"),
        (60_000, "minute"),
        (1_000, "second"),
        (1, "millisecond"),
    ];
    for (size, name) in units {
        if ms >= size && ms.is_multiple_of(size) {
            let n = ms / size;
            return if n == 1 {
                name.to_owned()
            } else {
                format!("{n} {name}s")
            };
        }
    }
    format!("{ms} milliseconds")
}

/// A count with thousands separators: `1234567` → `1,234,567`.
#[must_use]
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate per second as a count (`1,250,000`): `n / elapsed`, or `n` when no time passed.
#[must_use]
pub fn rate(n: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    count(if secs > 0.0 { (n as f64 / secs) as u64 } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: [(u64, &str); 14] = [
            (0, "0ms"),
            (850, "850ms"),
            (1_000, "1s"),
            (1_500, "1.5s"),
            (3_214, "3.21s"),
            (9_999, "9.99s"),
            (12_400, "12s"),
            (60_000, "1m"),
            (63_000, "1m 3s"),
            (300_000, "5m"),
            (3_600_000, "1h"),
            (7_500_000, "2h 5m"),
            (86_400_000 * 3 + 3_600_000 * 4, "3d 4h"),
            (86_400_000 * 2 + 59_000, "2d"),
        ];
        for (ms, want) in cases {
            assert_eq!(duration(Duration::from_millis(ms)), want, "{ms} ms");
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(interval(Duration::from_secs(300)), "5 minutes");
        assert_eq!(interval(Duration::from_secs(30)), "30 seconds");
        assert_eq!(interval(Duration::from_secs(3_600)), "hour");
        assert_eq!(interval(Duration::from_secs(2 * 86_400)), "2 days");
        assert_eq!(interval(Duration::from_millis(1_500)), "1500 milliseconds");
        assert_eq!(interval(Duration::ZERO), "0 milliseconds");
    }

    #[test]
    fn counts_and_rates() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(rate(3_000, Duration::from_millis(1_500)), "2,000");
        assert_eq!(rate(7, Duration::ZERO), "7");
    }
}
