//! POSIX TZ strings (`std offset dst [offset],start[/time],end[/time]`), as TZif footers
//! give the rule past the transition table, read and applied as zoneinfo's `_TZStr` does.

use super::{bad, After, ZoneError};
use crate::civil::{
    days_before_year, days_from_civil, days_in_month, is_leap, weekday_of, DAYS_BEFORE_MONTH,
};

/// A POSIX TZ rule: standard and daylight offsets with the yearly switch dates.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    std: i64,
    dst: i64,
    dst_diff: i64,
    start: RuleDate,
    end: RuleDate,
}

/// When a yearly switch happens, in local time.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleDate {
    /// `Jn` (julian: 1..365, February 29 never counted) or `n` (0..365).
    Day { day: i64, julian: bool, secs: i64 },
    /// `Mm.w.d`: day `d` (0 Sunday) of week `w` (5: the last) of month `m`.
    Month {
        month: i64,
        week: i64,
        weekday: i64,
        secs: i64,
    },
}

impl Rule {
    fn transitions(&self, year: i64) -> (i64, i64) {
        (self.start.year_to_epoch(year), self.end.year_to_epoch(year))
    }

    pub fn offset_of_local(&self, ts: i64, year: i64) -> i64 {
        let (mut start, mut end) = self.transitions(year);
        // With fold 0 the daylight period, in wall time, starts at the end of the gap (positive
        // shift) or ends at the end of the fold (negative shift).
        if self.dst_diff >= 0 {
            start += self.dst_diff;
        } else {
            end -= self.dst_diff;
        }
        if self.is_dst(start, end, ts) {
            self.dst
        } else {
            self.std
        }
    }

    pub fn offset_from_utc(&self, ts: i64, year: i64) -> i64 {
        let (start, end) = self.transitions(year);
        if self.is_dst(start - self.std, end - self.dst, ts) {
            self.dst
        } else {
            self.std
        }
    }

    fn is_dst(&self, start: i64, end: i64, ts: i64) -> bool {
        if start < end {
            start <= ts && ts < end
        } else {
            !(end <= ts && ts < start)
        }
    }
}

impl RuleDate {
    /// The switch in local seconds since the epoch, in `year`.
    fn year_to_epoch(&self, year: i64) -> i64 {
        match *self {
            RuleDate::Day { day, julian, secs } => {
                let d = if julian && day >= 59 && is_leap(year) {
                    day + 1
                } else {
                    day
                };
                (days_before_year(year) + d) * 86_400 + secs
            }
            RuleDate::Month {
                month,
                week,
                weekday,
                secs,
            } => {
                let first = days_from_civil(year, month, 1);
                let first_weekday = weekday_of(first); // Monday 0
                let mut day = (weekday - (first_weekday + 1)).rem_euclid(7) + 1;
                day += (week - 1) * 7;
                if day > days_in_month(year, month) {
                    day -= 7;
                }
                let leap_shift = i64::from(month > 2 && is_leap(year));
                let ordinal =
                    days_before_year(year) + DAYS_BEFORE_MONTH[month as usize] + leap_shift + day;
                ordinal * 86_400 + secs
            }
        }
    }
}

/// `std[offset[dst[offset],start[/time],end[/time]]]` (POSIX TZ, as TZif footers use it).
pub fn parse_tz_string(text: &str) -> Result<After, ZoneError> {
    let invalid = || bad(format!("{text} is not a valid TZ string"));
    let (head, rules) = match text.split_once(',') {
        Some((h, r)) => (h, Some(r)),
        None => (text, None),
    };
    let mut p = Cursor {
        s: head.as_bytes(),
        pos: 0,
    };
    p.abbreviation().ok_or_else(invalid)?;
    let std = if p.at_end() {
        0
    } else {
        p.offset().ok_or_else(invalid)?
    };
    if p.at_end() {
        return match rules {
            None => Ok(After::Fixed(std)),
            Some(_) => Err(bad(format!("Transition rule present without DST: {text}"))),
        };
    }
    p.abbreviation().ok_or_else(invalid)?;
    let dst = if p.at_end() {
        std + 3600
    } else {
        p.offset().ok_or_else(invalid)?
    };
    if !p.at_end() {
        return Err(invalid());
    }
    let rules = rules.ok_or_else(|| bad(format!("Missing transition rules: {text}")))?;
    let (a, b) = rules.split_once(',').ok_or_else(invalid)?;
    let start = parse_rule_date(a).ok_or_else(invalid)?;
    let end = parse_rule_date(b).ok_or_else(invalid)?;
    Ok(After::Rule(Rule {
        std,
        dst,
        dst_diff: dst - std,
        start,
        end,
    }))
}

fn parse_rule_date(text: &str) -> Option<RuleDate> {
    let mut parts = text.split('/');
    let date = parts.next()?;
    let secs = match parts.next() {
        Some(time) => parse_time(time)?,
        None => 7200,
    };
    if parts.next().is_some() {
        return None;
    }
    if let Some(rest) = date.strip_prefix('M') {
        let mut it = rest.split('.');
        let month: i64 = it.next()?.parse().ok()?;
        let week: i64 = it.next()?.parse().ok()?;
        let weekday: i64 = it.next()?.parse().ok()?;
        let ok = it.next().is_none()
            && (1..=12).contains(&month)
            && (1..=5).contains(&week)
            && (0..=6).contains(&weekday);
        return ok.then_some(RuleDate::Month {
            month,
            week,
            weekday,
            secs,
        });
    }
    let (digits, julian) = match date.strip_prefix('J') {
        Some(d) => (d, true),
        None => (date, false),
    };
    let day: i64 = digits.parse().ok()?;
    (i64::from(julian)..=365)
        .contains(&day)
        .then_some(RuleDate::Day { day, julian, secs })
}

/// `[+|-]h[:mm[:ss]]`, hours up to 167 (TZif v3).
fn parse_time(text: &str) -> Option<i64> {
    let mut fields = [0i64; 3];
    for (n, part) in text.split(':').enumerate() {
        *fields.get_mut(n)? = part.parse().ok()?;
    }
    Some(fields[0] * 3600 + fields[1] * 60 + fields[2])
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// `<[A-Za-z0-9+-]+>` or a run of characters other than `<`, digits, `:`, `.`, `+`, `-`.
    fn abbreviation(&mut self) -> Option<()> {
        let rest = &self.s[self.pos..];
        if rest.first() == Some(&b'<') {
            let close = rest.iter().position(|&c| c == b'>')?;
            let inner = &rest[1..close];
            let ok = !inner.is_empty()
                && inner
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'-');
            self.pos += close + 1;
            return ok.then_some(());
        }
        let len = rest
            .iter()
            .take_while(|c| !(c.is_ascii_digit() || b"<:.+-".contains(c)))
            .count();
        self.pos += len;
        (len > 0).then_some(())
    }

    /// `[+-]?hh[:mm[:ss]]`; POSIX counts west as positive, so `5` is UTC-5.
    fn offset(&mut self) -> Option<i64> {
        let sign = match self.s.get(self.pos) {
            Some(b'-') => {
                self.pos += 1;
                1
            }
            Some(b'+') => {
                self.pos += 1;
                -1
            }
            _ => -1,
        };
        let h = self.digits(1, 2)?;
        let mut total = h * 3600;
        for scale in [60, 1] {
            if self.s.get(self.pos) != Some(&b':') {
                break;
            }
            self.pos += 1;
            total += self.digits(2, 2)? * scale;
        }
        (total < 86_400).then_some(sign * total)
    }

    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let rest = &self.s[self.pos..];
        let len = rest
            .iter()
            .take(max)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if len < min {
            return None;
        }
        self.pos += len;
        std::str::from_utf8(&rest[..len]).ok()?.parse().ok()
    }
}
