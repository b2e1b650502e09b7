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

mod posix;
mod tzif;

use std::fmt;

use crate::civil::year_of_days;
use posix::{parse_tz_string, Rule};

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

/// What follows the transition table: one offset, or the footer's yearly rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum After {
    Fixed(i64),
    Rule(Rule),
}

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
        let file = tzif::parse(data)?;
        build(file)
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

fn build(file: tzif::TzifFile) -> Result<Zone, ZoneError> {
    let tzif::TzifFile {
        trans_utc,
        trans_idx,
        utcoff,
        isdst,
        footer,
    } = file;
    let (trans_idx, utcoff, isdst) = (&trans_idx[..], &utcoff[..], &isdst[..]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::civil::days_from_civil;

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
