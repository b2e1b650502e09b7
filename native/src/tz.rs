//! Time zones for calendar windows, read from the same TZif data Python's `zoneinfo` reads.
//!
//! Python hands over the bytes of the zone's TZif file (the one `ZoneInfo(name)` loads: the
//! first match on `zoneinfo.TZPATH`, else the `tzdata` package), and this module answers the
//! two questions `limiter/windows.py` asks `zoneinfo`, with its rules (PEP 495):
//!
//! - the UTC offset in force at a UTC instant (`datetime.fromtimestamp(t, zone)`), and
//! - the UTC offset of a local wall-clock time with `fold=0` (`naive.replace(tzinfo=zone)`):
//!   in a gap the offset before the transition, in a fold the earlier instant.
//!
//! Transitions past the file's table follow its POSIX TZ footer, as `zoneinfo` does. Sharing
//! the data file (rather than a database compiled into the crate) keeps both sides on one
//! tzdata release.

use std::fmt;

/// A zone that could not be read; the message names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError(pub String);

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(what: impl Into<String>) -> ZoneError {
    ZoneError(what.into())
}

/// One zone: the TZif transition table and what follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    trans_utc: Vec<i64>,
    /// Transitions in local wall time, for fold 0 (the larger of the two offsets around each).
    trans_local_fold0: Vec<i64>,
    /// The offset each transition switches to.
    offsets: Vec<i64>,
    before: Option<i64>,
    after: After,
}

#[derive(Debug, Clone, PartialEq)]
enum After {
    Fixed(i64),
    Rule(Rule),
}

/// A POSIX TZ rule: standard and daylight offsets with the yearly switch dates.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    std: i64,
    dst: i64,
    dst_diff: i64,
    start: RuleDate,
    end: RuleDate,
}

#[derive(Debug, Clone, PartialEq)]
enum RuleDate {
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

const EPOCH_ORDINAL: i64 = 719_163; // date(1970, 1, 1).toordinal()
const DAYS_BEFORE_MONTH: [i64; 13] = [-1, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];

impl Zone {
    /// UTC, for calendar windows of a domain that names no zone.
    pub fn utc() -> Zone {
        Zone {
            trans_utc: Vec::new(),
            trans_local_fold0: Vec::new(),
            offsets: Vec::new(),
            before: None,
            after: After::Fixed(0),
        }
    }

    /// Read a TZif file (versions 1 to 4).
    pub fn from_tzif(data: &[u8]) -> Result<Zone, ZoneError> {
        let mut r = Reader { data, pos: 0 };
        let mut header = r.header()?;
        let mut time_size = 4;
        if header.version >= 2 {
            r.skip(header.v1_data_len())?;
            header = r.header()?;
            time_size = 8;
        }
        let mut trans_utc = Vec::with_capacity(header.timecnt);
        for _ in 0..header.timecnt {
            trans_utc.push(if time_size == 4 {
                i64::from(r.i32()?)
            } else {
                r.i64()?
            });
        }
        let trans_idx = r.take(header.timecnt)?.to_vec();
        let mut utcoff = Vec::with_capacity(header.typecnt);
        let mut isdst = Vec::with_capacity(header.typecnt);
        for _ in 0..header.typecnt {
            utcoff.push(i64::from(r.i32()?));
            isdst.push(r.take(1)?[0] != 0);
            r.skip(1)?; // abbreviation index
        }
        if trans_idx.iter().any(|&i| usize::from(i) >= utcoff.len()) {
            return Err(bad(
                "TZif transition names a local time type that does not exist",
            ));
        }
        r.skip(header.charcnt)?;
        let footer = if header.version >= 2 {
            r.skip(header.isutcnt + header.isstdcnt + header.leapcnt * 12)?;
            Some(r.footer()?)
        } else {
            None
        };
        build(trans_utc, &trans_idx, &utcoff, &isdst, footer)
    }

    /// The offset in force at UTC second `ts` (`zoneinfo`'s `fromutc`).
    pub fn offset_at_utc(&self, ts: i64) -> i64 {
        let n = self.trans_utc.len();
        if n >= 1 && ts < self.trans_utc[0] {
            return self.before.unwrap_or(0);
        }
        if n == 0 || ts > self.trans_utc[n - 1] {
            match &self.after {
                After::Rule(rule) => {
                    return rule.offset_from_utc(ts, year_of_days(ts.div_euclid(86_400)))
                }
                After::Fixed(off) if n == 0 => return *off,
                After::Fixed(_) => {}
            }
        }
        let idx = self.trans_utc.partition_point(|&t| t <= ts);
        if n > 1 && ts >= self.trans_utc[1] {
            self.offsets[idx - 1]
        } else if ts > self.trans_utc[n - 1] {
            match &self.after {
                After::Fixed(off) => *off,
                After::Rule(_) => self.offsets[n - 1],
            }
        } else {
            self.offsets[0]
        }
    }

    /// The offset of local wall-clock second `local` with fold 0 (`zoneinfo`'s `utcoffset`).
    pub fn offset_of_local(&self, local: i64) -> i64 {
        let lt = &self.trans_local_fold0;
        let n = lt.len();
        if n > 0 && local < lt[0] {
            return self.before.unwrap_or(0);
        }
        if n == 0 || local > lt[n - 1] {
            return match &self.after {
                After::Rule(rule) => {
                    rule.offset_of_local(local, year_of_days(local.div_euclid(86_400)))
                }
                After::Fixed(off) => *off,
            };
        }
        self.offsets[lt.partition_point(|&t| t <= local) - 1]
    }
}

fn build(
    trans_utc: Vec<i64>,
    trans_idx: &[u8],
    utcoff: &[i64],
    isdst: &[bool],
    footer: Option<String>,
) -> Result<Zone, ZoneError> {
    let offsets: Vec<i64> = trans_idx.iter().map(|&i| utcoff[usize::from(i)]).collect();
    let trans_local_fold0 = local_transitions(trans_idx, &trans_utc, utcoff);
    // The first standard-time type, else the first transition's: what applies before them all.
    let before = isdst
        .iter()
        .position(|d| !d)
        .map(|i| utcoff[i])
        .or_else(|| offsets.first().copied());
    let after = match footer.as_deref() {
        Some(text) if !text.is_empty() => parse_tz_string(text)?,
        _ => After::Fixed(
            offsets
                .last()
                .or(utcoff.last())
                .copied()
                .ok_or_else(|| bad("TZif file holds no time zone information"))?,
        ),
    };
    Ok(Zone {
        trans_utc,
        trans_local_fold0,
        offsets,
        before,
        after,
    })
}

/// Each transition in local wall time for fold 0: UTC plus the larger of the offsets before and
/// after it (so a gap's times come before it, and a fold's earlier pass too).
fn local_transitions(trans_idx: &[u8], trans_utc: &[i64], utcoff: &[i64]) -> Vec<i64> {
    let mut out = Vec::with_capacity(trans_utc.len());
    for (i, &t) in trans_utc.iter().enumerate() {
        let (a, b) = if i == 0 {
            if utcoff.len() > 1 {
                (utcoff[0], utcoff[usize::from(trans_idx[0])])
            } else {
                (utcoff[0], utcoff[0])
            }
        } else {
            (
                utcoff[usize::from(trans_idx[i - 1])],
                utcoff[usize::from(trans_idx[i])],
            )
        };
        out.push(t + a.max(b));
    }
    out
}

impl Rule {
    fn transitions(&self, year: i64) -> (i64, i64) {
        (self.start.year_to_epoch(year), self.end.year_to_epoch(year))
    }

    fn offset_of_local(&self, ts: i64, year: i64) -> i64 {
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

    fn offset_from_utc(&self, ts: i64, year: i64) -> i64 {
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
fn parse_tz_string(text: &str) -> Result<After, ZoneError> {
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

struct Header {
    version: u8,
    isutcnt: usize,
    isstdcnt: usize,
    leapcnt: usize,
    timecnt: usize,
    typecnt: usize,
    charcnt: usize,
}

impl Header {
    fn v1_data_len(&self) -> usize {
        self.timecnt * 5
            + self.typecnt * 6
            + self.charcnt
            + self.leapcnt * 8
            + self.isstdcnt
            + self.isutcnt
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ZoneError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| bad("TZif file is truncated"))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Result<(), ZoneError> {
        self.take(n).map(|_| ())
    }

    fn i32(&mut self) -> Result<i32, ZoneError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, ZoneError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn count(&mut self) -> Result<usize, ZoneError> {
        usize::try_from(self.i32()?).map_err(|_| bad("TZif header holds a negative count"))
    }

    fn header(&mut self) -> Result<Header, ZoneError> {
        if self.take(4)? != b"TZif" {
            return Err(bad("not a TZif file: magic not found"));
        }
        let version = match self.take(1)?[0] {
            0 => 1,
            c @ b'2'..=b'9' => c - b'0',
            other => return Err(bad(format!("TZif version byte {other} is not a version"))),
        };
        self.skip(15)?;
        Ok(Header {
            version,
            isutcnt: self.count()?,
            isstdcnt: self.count()?,
            leapcnt: self.count()?,
            timecnt: self.count()?,
            typecnt: self.count()?,
            charcnt: self.count()?,
        })
    }

    fn footer(&mut self) -> Result<String, ZoneError> {
        if self.take(1)? != b"\n" {
            return Err(bad("TZif footer does not start with a newline"));
        }
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| bad("TZif footer does not end with a newline"))?;
        String::from_utf8(rest[..end].to_vec()).map_err(|_| bad("TZif footer is not text"))
    }
}

// -- the proleptic Gregorian calendar, days counted from 1970-01-01 ---------------------------

pub fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days from 1970-01-01 to January 1st of `year`, minus one (`zoneinfo`'s ordinal base).
fn days_before_year(year: i64) -> i64 {
    let y = year - 1;
    y * 365 + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400) - EPOCH_ORDINAL
}

pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn year_of_days(days: i64) -> i64 {
    civil_from_days(days).0
}

/// Monday 0 … Sunday 6 (Python's `weekday()`); 1970-01-01 was a Thursday.
pub fn weekday_of(days: i64) -> i64 {
    (days + 3).rem_euclid(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 TZif file with the given transitions (time, type) and types (offset, isdst).
    fn tzif(transitions: &[(i64, u8)], types: &[(i32, bool)], footer: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let header = |out: &mut Vec<u8>, timecnt: usize, typecnt: usize| {
            out.extend_from_slice(b"TZif2");
            out.extend_from_slice(&[0; 15]);
            for n in [0, 0, 0, timecnt, typecnt, 1] {
                out.extend_from_slice(&(n as i32).to_be_bytes());
            }
        };
        header(&mut out, 0, 1); // an empty v1 part
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        header(&mut out, transitions.len(), types.len());
        for (t, _) in transitions {
            out.extend_from_slice(&t.to_be_bytes());
        }
        out.extend(transitions.iter().map(|(_, i)| *i));
        for (off, dst) in types {
            out.extend_from_slice(&off.to_be_bytes());
            out.push(u8::from(*dst));
            out.push(0);
        }
        out.push(0);
        out.push(b'\n');
        out.extend_from_slice(footer.as_bytes());
        out.push(b'\n');
        out
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-800_000, -1, 0, 1, 59, 365, 10_957, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(weekday_of(0), 3);
        assert_eq!(days_before_year(1970), -1);
    }

    #[test]
    fn fixed_zone_from_its_footer() {
        let zone = Zone::from_tzif(&tzif(&[], &[(0, false)], "UTC0")).unwrap();
        assert_eq!(
            (zone.offset_at_utc(1_000), zone.offset_of_local(1_000)),
            (0, 0)
        );
        let plus = Zone::from_tzif(&tzif(&[], &[(19_800, false)], "<+0530>-5:30")).unwrap();
        assert_eq!(plus.offset_at_utc(0), 19_800);
    }

    #[test]
    fn posix_rule_gives_new_york_offsets() {
        // No table at all: every answer comes from the footer rule.
        let zone =
            Zone::from_tzif(&tzif(&[], &[(-18_000, false)], "EST5EDT,M3.2.0,M11.1.0")).unwrap();
        // 2024-03-10 07:00 UTC is 03:00 EDT (the switch); a second before is 01:59:59 EST.
        let switch = days_from_civil(2024, 3, 10) * 86_400 + 7 * 3600;
        assert_eq!(zone.offset_at_utc(switch - 1), -18_000);
        assert_eq!(zone.offset_at_utc(switch), -14_400);
        // 02:30 local does not exist: fold 0 reads it with the offset before (EST).
        let gap = days_from_civil(2024, 3, 10) * 86_400 + 2 * 3600 + 1800;
        assert_eq!(zone.offset_of_local(gap), -18_000);
        // 01:30 on 2024-11-03 happens twice: fold 0 is the first (EDT).
        let fold = days_from_civil(2024, 11, 3) * 86_400 + 3600 + 1800;
        assert_eq!(zone.offset_of_local(fold), -14_400);
    }

    #[test]
    fn table_transitions_and_what_comes_before() {
        let types = [(3600, false), (7200, true)];
        let zone = Zone::from_tzif(&tzif(&[(1000, 1), (5000, 0)], &types, "")).unwrap();
        assert_eq!(zone.offset_at_utc(999), 3600);
        assert_eq!(zone.offset_at_utc(1000), 7200);
        assert_eq!(zone.offset_at_utc(6000), 3600);
        // local fold 0 transition times: 1000 + 7200 and 5000 + 7200
        assert_eq!(zone.offset_of_local(8199), 3600);
        assert_eq!(zone.offset_of_local(8200), 7200);
    }

    #[test]
    fn bad_data_is_refused_with_a_reason() {
        assert!(Zone::from_tzif(b"nope").is_err());
        let mut data = tzif(&[], &[(0, false)], "UTC0");
        data.truncate(60);
        assert_eq!(
            Zone::from_tzif(&data).unwrap_err().0,
            "TZif file is truncated"
        );
        assert!(Zone::from_tzif(&tzif(&[], &[(0, false)], "EST5EDT")).is_err());
    }
}
