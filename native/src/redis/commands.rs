//! The commands of a charge and what their replies mean: INCRBY + EXPIRE per plain counter,
//! EVALSHA of the driver script with `storage/scripts.py`'s KEYS / ARGV layout, and the replies
//! back into counter values and verdicts, or the error that fails the request.

use super::RedisScript;
use crate::algorithms::{Check, Verdict};
use crate::engine::{EngineError, Pending};
use crate::memory::Increment;
use crate::resp::{Arg, Encoder, Reply};

/// Replies that mean the endpoint did not really answer (redis-py's transport errors): they fail
/// the whole round trip, as in `storage/topology.py`.
const TRANSPORT_ERRORS: [&str; 7] = [
    "READONLY",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "ASK",
    "MOVED",
    "LOADING",
];

/// The reply of a transport-class error, if `reply` is one.
pub(super) fn transport_error(reply: &Reply) -> Option<String> {
    match reply {
        Reply::Error(e)
            if TRANSPORT_ERRORS
                .iter()
                .any(|p| e.split(' ').next() == Some(*p)) =>
        {
            Some(e.clone())
        }
        _ => None,
    }
}

pub(super) fn is_noscript(reply: Option<&Reply>) -> bool {
    matches!(reply, Some(Reply::Error(e)) if e.starts_with("NOSCRIPT"))
}

/// A Redis error for one command: it belongs to that command, retrying will not help.
pub(super) fn storage_error(message: &str) -> EngineError {
    let message = message.strip_prefix("ERR ").unwrap_or(message);
    EngineError::Storage {
        message: format!("redis error: {message}"),
        transient: false,
    }
}

fn unexpected(what: &str) -> EngineError {
    EngineError::Storage {
        message: format!("redis: unexpected reply: {what}"),
        transient: false,
    }
}

pub(super) fn counter_values(reply: &Reply, count: usize) -> Result<Vec<i64>, EngineError> {
    match reply {
        Reply::Error(e) => Err(storage_error(e)),
        Reply::Array(Some(items)) if items.len() == count => items
            .iter()
            .map(|item| match item {
                Reply::Bulk(None) => Ok(0),
                other => other
                    .as_int()
                    .ok_or_else(|| unexpected("a counter that is not a number")),
            })
            .collect(),
        _ => Err(unexpected(&format!("MGET did not answer {count} values"))),
    }
}

/// The INCRBY values and the verdicts of a charge's replies; the first error reply fails it.
pub(super) fn charge_results(
    all: &[Option<Reply>],
    plain_counters: usize,
    scripted: usize,
) -> Result<(Vec<i64>, Vec<Verdict>), EngineError> {
    let mut replies = Vec::with_capacity(all.len());
    for reply in all {
        match reply {
            Some(Reply::Error(e)) => return Err(storage_error(e)),
            Some(r) => replies.push(r),
            None => return Err(unexpected("a reply is missing")),
        }
    }
    let plain = 2 * plain_counters;
    let values = replies[..plain]
        .iter()
        .step_by(2)
        .map(|r| {
            r.as_int()
                .ok_or_else(|| unexpected("INCRBY did not answer a number"))
        })
        .collect::<Result<Vec<i64>, _>>()?;
    let mut verdicts = Vec::new();
    for reply in &replies[plain..] {
        let Reply::Array(Some(items)) = reply else {
            return Err(unexpected("the script did not answer a list"));
        };
        for chunk in items.chunks(4) {
            verdicts.push(verdict(chunk).ok_or_else(|| unexpected("a verdict is not 4 numbers"))?);
        }
    }
    if verdicts.len() != scripted {
        return Err(unexpected(&format!(
            "{} verdicts for {scripted} checks",
            verdicts.len()
        )));
    }
    Ok((values, verdicts))
}

fn verdict(chunk: &[Reply]) -> Option<Verdict> {
    let [allowed, remaining, reset, used] = chunk else {
        return None;
    };
    Some(Verdict {
        allowed: allowed.as_int()? != 0,
        remaining: remaining.as_int()?,
        reset_ms: reset.as_float()?,
        used: used.as_int()?,
    })
}

/// Encode an item's charge; how many replies it gets.
pub(super) fn encode_charge(
    out: &mut Encoder,
    script: &RedisScript,
    incs: &[Increment],
    p: &Pending,
) -> usize {
    for inc in incs {
        out.command(&[
            Arg::Str("INCRBY"),
            Arg::Str(&inc.key),
            Arg::Int(inc.hits as i64),
        ]);
        out.command(&[Arg::Str("EXPIRE"), Arg::Str(&inc.key), Arg::Int(inc.ttl)]);
    }
    let groups = script_groups(p);
    for group in &groups {
        encode_evalsha(out, script, p, group);
    }
    2 * incs.len() + groups.len()
}

/// The algorithm checks per EVALSHA: all together in an atomic request, else one each.
pub(super) fn script_groups(p: &Pending) -> Vec<Vec<&Check>> {
    let checks: Vec<&Check> = p
        .checks
        .iter()
        .filter_map(|c| c.algorithm.as_ref())
        .collect();
    if checks.is_empty() {
        Vec::new()
    } else if p.atomic {
        vec![checks]
    } else {
        checks.into_iter().map(|c| vec![c]).collect()
    }
}

/// `EVALSHA sha numkeys key… now atomic` then 8 values per key (see `lua/driver.lua`).
pub(super) fn encode_evalsha(
    out: &mut Encoder,
    script: &RedisScript,
    p: &Pending,
    group: &[&Check],
) {
    let mut texts: Vec<String> = Vec::with_capacity(group.len() * 2);
    for c in group {
        texts.push(num(c.limit.window_ms));
        texts.push(num(c.window_end_ms));
    }
    let mut args: Vec<Arg<'_>> = Vec::with_capacity(5 + group.len() * 9);
    args.extend([
        Arg::Str("EVALSHA"),
        Arg::Str(&script.sha),
        Arg::Int(group.len() as i64),
    ]);
    args.extend(group.iter().map(|c| Arg::Str(&c.key)));
    args.extend([Arg::Int(p.now_ms), Arg::Int(i64::from(p.atomic))]);
    for (c, t) in group.iter().zip(texts.chunks(2)) {
        let lim = &c.limit;
        let counting = if lim.always {
            2
        } else {
            i64::from(lim.count_rejected)
        };
        args.extend([
            Arg::Str(c.algorithm.name()),
            Arg::Int(i64::from(lim.limit)),
            Arg::Str(&t[0]),
            Arg::Int(i64::from(lim.burst)),
            Arg::Int(c.hits as i64),
            Arg::Int(counting),
            Arg::Int((c.ttl_ms as i64).max(1)),
            Arg::Str(&t[1]),
        ]);
    }
    out.command(&args);
}

/// `storage/scripts.py`'s `_num`: whole numbers without a decimal point.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}
