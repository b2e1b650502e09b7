//! The five rate-limit algorithms as pure functions of (state, now, hits, limit).
//!
//! The twin of `sidecar/limiter/algorithms.py` (and of `storage/lua/*.lua`): the same float
//! operations in the same order, so all three reach bit-identical decisions for the same sequence
//! of calls. Time is milliseconds since the epoch as an `f64`; nothing here reads a clock.
//! Python's `max(a, b)` / `min(a, b)` return the first argument on ties and `math.floor` /
//! `int()` floor / truncate to an integer: [`py_max`], [`py_min`] and the `as i64` casts below
//! keep those exact choices.
//!
//! Every function returns `(new_state, Verdict)`; `new_state` is `None` when nothing is written.

/// The algorithm of a rule; the names are the rules' `algorithm:` words and the Lua dispatch keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    FixedWindow,
    SlidingWindow,
    SlidingLog,
    TokenBucket,
    LeakyBucket,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] = [
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
        Algorithm::SlidingLog,
        Algorithm::TokenBucket,
        Algorithm::LeakyBucket,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::SlidingLog => "sliding_log",
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::LeakyBucket => "leaky_bucket",
        }
    }

    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// What one rule allows: `limit` per `window_ms`, with a `burst` for the buckets. `always`
/// charges the hits even when refused, whatever the algorithm (usage reported after the fact).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub limit: u32,
    pub window_ms: f64,
    pub burst: u32,
    pub count_rejected: bool,
    pub always: bool,
}

/// The answer for one descriptor; `used` is the fixed/sliding counter after the call,
/// `reset_ms` the time until the window resets (allowed) or until a request of the same size
/// would be allowed (refused).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    pub remaining: i64,
    pub reset_ms: f64,
    pub used: i64,
}

/// One key's state, per algorithm (the Python store keeps the same numbers in a list).
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// fixed window (and the reference's plain INCRBY counters): the count.
    Count(i64),
    /// sliding window: window start, current count, previous count.
    Sliding { start: f64, cur: f64, prev: f64 },
    /// sliding log: (time, hits), oldest first.
    Log(Vec<(f64, f64)>),
    /// token bucket: tokens, last refill time.
    Tokens { tokens: f64, last: f64 },
    /// leaky bucket (GCRA): the theoretical arrival time.
    Tat(f64),
}

/// Python's `max(a, b)`: `a` unless `b` is strictly greater.
#[inline]
pub fn py_max(a: f64, b: f64) -> f64 {
    if b > a {
        b
    } else {
        a
    }
}

/// Python's `min(a, b)`: `a` unless `b` is strictly smaller.
#[inline]
pub fn py_min(a: f64, b: f64) -> f64 {
    if b < a {
        b
    } else {
        a
    }
}

/// Python's float `%`: the remainder takes the sign of the divisor.
#[inline]
pub fn py_mod(x: f64, y: f64) -> f64 {
    let m = x % y;
    if m != 0.0 && ((y < 0.0) != (m < 0.0)) {
        m + y
    } else {
        m
    }
}

fn verdict(allowed: bool, remaining: i64, reset_ms: f64, used: i64) -> Verdict {
    Verdict {
        allowed,
        remaining,
        reset_ms,
        used,
    }
}

// -- fixed window: the key carries the window start ------------------------------------------

pub fn fixed_window(
    state: Option<&State>,
    now: f64,
    hits: u64,
    lim: &Limit,
    window_end: f64,
) -> (Option<State>, Verdict) {
    let count = match state {
        Some(State::Count(n)) => *n,
        Some(other) => first_number(other) as i64,
        None => 0,
    };
    let limit = i64::from(lim.limit);
    let after = count.saturating_add(hits as i64);
    let reset = window_end - now;
    if after > limit && !(lim.count_rejected || lim.always) {
        return (None, verdict(false, 0, reset, count));
    }
    let remaining = (limit - after).max(0);
    (
        Some(State::Count(after)),
        verdict(after <= limit, remaining, reset, after),
    )
}

/// `state[0]` of a state of another shape (a key reused by another algorithm).
fn first_number(state: &State) -> f64 {
    match state {
        State::Count(n) => *n as f64,
        State::Sliding { start, .. } => *start,
        State::Log(log) => log.first().map_or(0.0, |e| e.0),
        State::Tokens { tokens, .. } => *tokens,
        State::Tat(t) => *t,
    }
}

// -- sliding window ---------------------------------------------------------------------------

pub fn sliding_window(
    state: Option<&State>,
    now: f64,
    hits: u64,
    lim: &Limit,
) -> (Option<State>, Verdict) {
    let w = lim.window_ms;
    let start = now - py_mod(now, w);
    let (mut cur, mut prev) = (0.0, 0.0);
    if let Some(State::Sliding {
        start: s,
        cur: c,
        prev: p,
    }) = state
    {
        if *s == start {
            (cur, prev) = (*c, *p);
        } else if *s == start - w {
            prev = *c;
        }
    }
    let elapsed = now - start;
    let weighted = (prev * ((w - elapsed) / w)).floor();
    let hits_f = hits as f64;
    let limit = f64::from(lim.limit);
    let after = weighted + cur + hits_f;
    if after <= limit {
        let new = State::Sliding {
            start,
            cur: cur + hits_f,
            prev,
        };
        return (
            Some(new),
            verdict(true, (limit - after) as i64, w - elapsed, after as i64),
        );
    }
    let charged = lim.count_rejected || lim.always;
    if charged {
        cur += hits_f;
    }
    let wait = sliding_wait(prev, cur, hits_f, limit, w, elapsed);
    let new = charged.then_some(State::Sliding { start, cur, prev });
    (new, verdict(false, 0, wait, after as i64))
}

/// Time until `hits` more fit as the previous window's weight decays (see the Python twin).
fn sliding_wait(prev: f64, cur: f64, hits: f64, limit: f64, w: f64, elapsed: f64) -> f64 {
    let room = limit - cur - hits;
    if room >= 0.0 {
        return py_max(1.0, w * (1.0 - (room + 1.0) / prev) - elapsed + 1.0);
    }
    let room_next = limit - hits;
    if room_next < 0.0 {
        return 2.0 * w - elapsed;
    }
    if cur <= room_next {
        return w - elapsed;
    }
    w - elapsed + py_max(1.0, w * (1.0 - (room_next + 1.0) / cur) + 1.0)
}

// -- sliding log ------------------------------------------------------------------------------

pub fn sliding_log(
    state: Option<&State>,
    now: f64,
    hits: u64,
    lim: &Limit,
) -> (Option<State>, Verdict) {
    let w = lim.window_ms;
    let old: &[(f64, f64)] = match state {
        Some(State::Log(log)) => log,
        _ => &[],
    };
    let cut = old.iter().take_while(|e| e.0 <= now - w).count();
    let mut log = old[cut..].to_vec();
    let used = log_sum(&log) as i64;
    let hits_i = hits as i64;
    let limit = i64::from(lim.limit);
    let after = used + hits_i;
    if after <= limit {
        if hits > 0 {
            append(&mut log, now, hits as f64);
        }
        let reset = log.first().map_or(w, |first| first.0 + w - now);
        return (
            Some(State::Log(log)),
            verdict(true, limit - after, reset, after),
        );
    }
    if lim.always && hits > 0 {
        match log.last_mut() {
            Some(last) if used >= limit => *last = (now, last.1 + hits as f64),
            _ => append(&mut log, now, hits as f64),
        }
        let wait = log_wait(&log, now, w, hits_i, limit);
        return (Some(State::Log(log)), verdict(false, 0, wait, after));
    }
    let wait = log_wait(&log, now, w, hits_i, limit);
    (
        (cut > 0).then_some(State::Log(log)),
        verdict(false, 0, wait, after),
    )
}

fn log_sum(log: &[(f64, f64)]) -> f64 {
    log.iter().map(|e| e.1).sum()
}

/// Hits of the same millisecond share one entry (they leave the window together).
fn append(log: &mut Vec<(f64, f64)>, now: f64, hits: f64) {
    match log.last_mut() {
        Some(last) if last.0 == now => last.1 += hits,
        _ => log.push((now, hits)),
    }
}

/// Time until enough of the oldest entries leave the window for `hits` to fit.
fn log_wait(log: &[(f64, f64)], now: f64, w: f64, hits: i64, limit: i64) -> f64 {
    if hits > limit {
        return w;
    }
    let mut used = log_sum(log) as i64;
    for &(time, n) in log {
        used -= n as i64;
        if used + hits <= limit {
            return py_max(1.0, time + w - now);
        }
    }
    w
}

// -- token bucket -----------------------------------------------------------------------------

pub fn token_bucket(
    state: Option<&State>,
    now: f64,
    hits: u64,
    lim: &Limit,
) -> (Option<State>, Verdict) {
    let rate = f64::from(lim.limit) / lim.window_ms;
    let capacity = f64::from(lim.burst);
    let mut tokens = capacity;
    if let Some(State::Tokens { tokens: t, last }) = state {
        tokens = py_min(capacity, t + py_max(0.0, now - last) * rate);
    }
    let hits_f = hits as f64;
    if hits_f <= tokens {
        tokens -= hits_f;
        let full_in = if rate > 0.0 {
            (capacity - tokens) / rate
        } else {
            lim.window_ms
        };
        let new = State::Tokens { tokens, last: now };
        return (
            Some(new),
            verdict(true, tokens.floor() as i64, full_in, hits as i64),
        );
    }
    let mut new = None;
    if lim.always {
        tokens -= hits_f;
        new = Some(State::Tokens { tokens, last: now });
    }
    let wait = if hits_f > capacity || rate <= 0.0 {
        lim.window_ms
    } else {
        (hits_f - tokens) / rate
    };
    (new, verdict(false, 0, py_max(1.0, wait), hits as i64))
}

// -- leaky bucket (GCRA) ----------------------------------------------------------------------

pub fn leaky_bucket(
    state: Option<&State>,
    now: f64,
    hits: u64,
    lim: &Limit,
) -> (Option<State>, Verdict) {
    let interval = if lim.limit > 0 {
        lim.window_ms / f64::from(lim.limit)
    } else {
        f64::INFINITY
    };
    let tolerance = (f64::from(lim.burst) - 1.0) * interval;
    let tat = match state {
        Some(State::Tat(t)) => py_max(*t, now),
        _ => now,
    };
    let hits_f = hits as f64;
    let new_tat = tat + hits_f * interval;
    let allow_at = new_tat - tolerance - interval;
    if interval.is_infinite() {
        return (None, verdict(false, 0, lim.window_ms, hits as i64));
    }
    if now < allow_at {
        if lim.always {
            let wait = py_max(1.0, allow_at + hits_f * interval - now);
            return (
                Some(State::Tat(new_tat)),
                verdict(false, 0, wait, hits as i64),
            );
        }
        return (
            None,
            verdict(false, 0, py_max(1.0, allow_at - now), hits as i64),
        );
    }
    let remaining = ((tolerance + interval - (new_tat - now)) / interval).floor() as i64;
    (
        Some(State::Tat(new_tat)),
        verdict(true, remaining.max(0), new_tat - now, hits as i64),
    )
}

// -- many descriptors at once, as the Lua driver does -----------------------------------------

/// One descriptor's call on one key.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub key: String,
    pub algorithm: Algorithm,
    pub limit: Limit,
    pub hits: u64,
    pub ttl_ms: f64,
    pub window_end_ms: f64,
}

/// Run `check`'s algorithm on `state` with `hits`.
pub fn judge(
    check: &Check,
    state: Option<&State>,
    now: f64,
    hits: u64,
) -> (Option<State>, Verdict) {
    let lim = &check.limit;
    match check.algorithm {
        Algorithm::FixedWindow => fixed_window(state, now, hits, lim, check.window_end_ms),
        Algorithm::SlidingWindow => sliding_window(state, now, hits, lim),
        Algorithm::SlidingLog => sliding_log(state, now, hits, lim),
        Algorithm::TokenBucket => token_bucket(state, now, hits, lim),
        Algorithm::LeakyBucket => leaky_bucket(state, now, hits, lim),
    }
}

/// Judge every check; with `atomic`, charge all of them or (if any is refused) none, and show
/// the allowed ones what they have left untouched. Returns the states to write (`None`: leave
/// that key alone) and the verdicts, in order.
pub fn run_checks(
    states: &[Option<&State>],
    checks: &[Check],
    now: f64,
    atomic: bool,
) -> (Vec<Option<State>>, Vec<Verdict>) {
    let mut results: Vec<(Option<State>, Verdict)> = checks
        .iter()
        .zip(states)
        .map(|(c, s)| judge(c, *s, now, c.hits))
        .collect();
    if atomic && !results.iter().all(|(_, v)| v.allowed) {
        let verdicts = results
            .iter()
            .zip(checks.iter().zip(states))
            .map(|((_, v), (c, s))| {
                if v.allowed {
                    judge(c, *s, now, 0).1
                } else {
                    *v
                }
            })
            .collect();
        return (vec![None; checks.len()], verdicts);
    }
    let verdicts = results.iter().map(|(_, v)| *v).collect();
    (
        results.iter_mut().map(|(s, _)| s.take()).collect(),
        verdicts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: f64 = 3_600_000.0;

    fn lim(limit: u32, burst: u32, count_rejected: bool) -> Limit {
        Limit {
            limit,
            window_ms: HOUR,
            burst,
            count_rejected,
            always: false,
        }
    }

    #[test]
    fn python_float_helpers() {
        assert_eq!(py_mod(-1.0, 3.0), 2.0);
        assert_eq!(py_mod(7.0, 3.0), 1.0);
        assert_eq!(py_max(1.0, f64::NAN), 1.0);
        assert_eq!(py_min(2.0, 1.0), 1.0);
    }

    #[test]
    fn fixed_window_counts_and_refuses_past_the_limit() {
        let l = lim(2, 1, false);
        let (s, v) = fixed_window(None, 10.0, 2, &l, 100.0);
        assert_eq!(
            (s.clone(), v.allowed, v.remaining, v.reset_ms),
            (Some(State::Count(2)), true, 0, 90.0)
        );
        let (s2, v2) = fixed_window(s.as_ref(), 20.0, 1, &l, 100.0);
        assert_eq!((s2, v2.allowed, v2.used), (None, false, 2));
        let counted = Limit {
            count_rejected: true,
            ..l
        };
        let (s3, v3) = fixed_window(s.as_ref(), 20.0, 1, &counted, 100.0);
        assert_eq!((s3, v3.allowed), (Some(State::Count(3)), false));
    }

    #[test]
    fn sliding_window_weighs_the_previous_window() {
        let l = Limit {
            window_ms: 1000.0,
            ..lim(10, 1, false)
        };
        let prev = State::Sliding {
            start: 0.0,
            cur: 10.0,
            prev: 0.0,
        };
        // half way into the next window: floor(10 * 0.5) = 5 weighted
        let (_, v) = sliding_window(Some(&prev), 1500.0, 5, &l);
        assert_eq!(
            (v.allowed, v.remaining, v.used, v.reset_ms),
            (true, 0, 10, 500.0)
        );
        let (s, v) = sliding_window(Some(&prev), 1500.0, 6, &l);
        assert_eq!((s, v.allowed, v.used), (None, false, 11));
        // room = 10 - 0 - 6 = 4 -> w*(1 - 5/10) - 500 + 1 = 1
        assert_eq!(v.reset_ms, 1.0);
    }

    #[test]
    fn sliding_log_shares_a_millisecond_and_waits_for_the_oldest() {
        let l = lim(3, 1, false);
        let (s, _) = sliding_log(None, 10.0, 1, &l);
        let (s, _) = sliding_log(s.as_ref(), 10.0, 1, &l);
        assert_eq!(s, Some(State::Log(vec![(10.0, 2.0)])));
        let (s, v) = sliding_log(s.as_ref(), 20.0, 1, &l);
        assert!(v.allowed);
        let (none, v) = sliding_log(s.as_ref(), 30.0, 1, &l);
        assert_eq!((none, v.allowed, v.reset_ms), (None, false, HOUR - 20.0));
        // the first entry leaves the window: trimmed and written
        let (s, v) = sliding_log(s.as_ref(), 10.0 + HOUR, 1, &l);
        assert!(v.allowed);
        assert_eq!(s, Some(State::Log(vec![(20.0, 1.0), (10.0 + HOUR, 1.0)])));
    }

    #[test]
    fn sliding_log_charged_always_folds_into_the_newest_entry() {
        let l = Limit {
            always: true,
            ..lim(2, 1, false)
        };
        let (s, _) = sliding_log(None, 1.0, 2, &l);
        let (s, v) = sliding_log(s.as_ref(), 5.0, 3, &l);
        assert!(!v.allowed);
        assert_eq!(s, Some(State::Log(vec![(5.0, 5.0)])));
    }

    #[test]
    fn token_bucket_refills_continuously_and_goes_into_debt_when_charged_always() {
        let l = Limit {
            window_ms: 1000.0,
            ..lim(2, 4, false)
        };
        let (s, v) = token_bucket(None, 0.0, 4, &l);
        assert_eq!((v.allowed, v.remaining, v.reset_ms), (true, 0, 2000.0));
        let (none, v) = token_bucket(s.as_ref(), 250.0, 1, &l);
        assert_eq!((none, v.allowed, v.reset_ms), (None, false, 250.0));
        let always = Limit { always: true, ..l };
        let (debt, _) = token_bucket(s.as_ref(), 0.0, 2, &always);
        assert_eq!(
            debt,
            Some(State::Tokens {
                tokens: -2.0,
                last: 0.0
            })
        );
    }

    #[test]
    fn leaky_bucket_paces_and_refuses_a_zero_limit() {
        let l = Limit {
            window_ms: 1000.0,
            ..lim(4, 1, false)
        };
        let (s, v) = leaky_bucket(None, 0.0, 1, &l);
        assert_eq!((v.allowed, v.remaining, v.reset_ms), (true, 0, 250.0));
        let (_, v) = leaky_bucket(s.as_ref(), 100.0, 1, &l);
        assert_eq!((v.allowed, v.reset_ms), (false, 150.0));
        let zero = Limit {
            window_ms: 1000.0,
            ..lim(0, 1, false)
        };
        let (none, v) = leaky_bucket(None, 0.0, 1, &zero);
        assert_eq!((none, v.allowed, v.reset_ms), (None, false, 1000.0));
    }

    #[test]
    fn atomic_checks_charge_all_or_none() {
        let fixed = Check {
            key: "a".into(),
            algorithm: Algorithm::FixedWindow,
            limit: lim(1, 1, false),
            hits: 1,
            ttl_ms: HOUR,
            window_end_ms: HOUR,
        };
        let tight = Check {
            key: "b".into(),
            limit: lim(0, 1, false),
            ..fixed.clone()
        };
        let (states, verdicts) = run_checks(&[None, None], &[fixed.clone(), tight], 0.0, true);
        assert_eq!(states, vec![None, None]);
        assert!(verdicts[0].allowed && !verdicts[1].allowed);
        assert_eq!(verdicts[0].remaining, 1); // peeked with 0 hits
        let (states, _) = run_checks(&[None], &[fixed], 0.0, true);
        assert_eq!(states, vec![Some(State::Count(1))]);
    }
}
