//! RFC 3339 timestamps (UTC, millisecond precision) for the API, without a
//! calendar dependency: days since the epoch to a civil date (Howard
//! Hinnant's `civil_from_days`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`; times before 1970 clamp to the epoch.
pub fn format(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Serde helper: `SystemTime` as an RFC 3339 string.
pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*t))
}

/// Serde helper: `Option<SystemTime>` as an RFC 3339 string or null.
pub fn serialize_opt<S: serde::Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn known_instants() {
        assert_eq!(format(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.789
        assert_eq!(format(at(951_827_696, 789)), "2000-02-29T12:34:56.789Z");
        // 2026-11-25T18:02:44Z
        assert_eq!(format(at(1_795_629_764, 0)), "2026-11-25T18:02:44.000Z");
        // Last second of 2100 (not a leap year).
        assert_eq!(format(at(4_133_980_799, 999)), "2100-12-31T23:59:59.999Z");
        assert_eq!(
            format(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    proptest::proptest! {
        /// Day by day the civil date advances by exactly one calendar day.
        #[test]
        fn consecutive_days_are_consecutive_dates(days in 0u64..200_000) {
            let (y, m, d) = civil_from_days(days);
            let (y2, m2, d2) = civil_from_days(days + 1);
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(m - 1) as usize];
            if d < len {
                proptest::prop_assert_eq!((y2, m2, d2), (y, m, d + 1));
            } else if m < 12 {
                proptest::prop_assert_eq!((y2, m2, d2), (y, m + 1, 1));
            } else {
                proptest::prop_assert_eq!((y2, m2, d2), (y + 1, 1, 1));
            }
        }
    }
}
