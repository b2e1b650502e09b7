//! Window boundaries: epoch-aligned fixed lengths, or calendar periods in a time zone
//! (the twin of `sidecar/limiter/windows.py`).

use crate::civil::{civil_from_days, days_from_civil, weekday_of};
use crate::rls::Unit;
use crate::tz::Zone;

/// [start, end) in ms of the epoch-aligned window of `window_ms` holding `now_ms`.
pub fn aligned_window(now_ms: i64, window_ms: i64) -> (i64, i64) {
    let start = now_ms - now_ms.rem_euclid(window_ms);
    (start, start + window_ms)
}

/// [start, end) in ms of the calendar day / week (from Monday) / month / year holding `now_ms`
/// in `zone`; `None` for the units that have no calendar window.
pub fn calendar_window(now_ms: i64, unit: Unit, zone: &Zone) -> Option<(i64, i64)> {
    let utc = now_ms.div_euclid(1000);
    let day = (utc + zone.offset_at_utc(utc)).div_euclid(86_400);
    let (start, end) = match unit {
        Unit::Day => (day, day + 1),
        Unit::Week => {
            let monday = day - weekday_of(day);
            (monday, monday + 7)
        }
        Unit::Month => {
            let (y, m, _) = civil_from_days(day);
            let start = days_from_civil(y, m, 1);
            let (ny, nm, _) = civil_from_days(start + 32);
            (start, days_from_civil(ny, nm, 1))
        }
        Unit::Year => {
            let (y, _, _) = civil_from_days(day);
            (days_from_civil(y, 1, 1), days_from_civil(y + 1, 1, 1))
        }
        _ => return None,
    };
    Some((midnight_ms(start, zone), midnight_ms(end, zone)))
}

/// Epoch ms of local midnight starting day `days` (fold 0: the earlier instant if ambiguous).
fn midnight_ms(days: i64, zone: &Zone) -> i64 {
    let local = days * 86_400;
    (local - zone.offset_of_local(local)) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> Zone {
        // A TZif v1 file with one type at offset 0 and nothing else.
        let mut data = b"TZif\0".to_vec();
        data.extend_from_slice(&[0; 15]);
        for n in [0i32, 0, 0, 0, 1, 1] {
            data.extend_from_slice(&n.to_be_bytes());
        }
        data.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        Zone::from_tzif(&data).unwrap()
    }

    #[test]
    fn aligned_windows_start_on_multiples_of_their_length() {
        assert_eq!(aligned_window(1_000_500, 1000), (1_000_000, 1_001_000));
        assert_eq!(aligned_window(59_999, 60_000), (0, 60_000));
    }

    #[test]
    fn calendar_windows_in_utc() {
        let zone = utc();
        // 2027-01-15T08:00:00Z, a Friday
        let now = days_from_civil(2027, 1, 15) * 86_400_000 + 8 * 3_600_000;
        let day = |y, m, d| days_from_civil(y, m, d) * 86_400_000;
        assert_eq!(
            calendar_window(now, Unit::Day, &zone),
            Some((day(2027, 1, 15), day(2027, 1, 16)))
        );
        assert_eq!(
            calendar_window(now, Unit::Week, &zone),
            Some((day(2027, 1, 11), day(2027, 1, 18)))
        );
        assert_eq!(
            calendar_window(now, Unit::Month, &zone),
            Some((day(2027, 1, 1), day(2027, 2, 1)))
        );
        assert_eq!(
            calendar_window(now, Unit::Year, &zone),
            Some((day(2027, 1, 1), day(2028, 1, 1)))
        );
        assert_eq!(calendar_window(now, Unit::Hour, &zone), None);
    }
}
