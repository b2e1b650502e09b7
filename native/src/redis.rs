//! The Redis side as batches: the commands of many planned requests in one pipeline, and their
//! replies back into decisions. The I/O stays with the caller: it sends
//! [`RedisBatch::commands`], reads [`RedisBatch::expected`] replies and hands their bytes to
//! [`RedisBatch::feed`], until there are no more commands.
//!
//! The commands are those `storage/redis.py` sends, byte for byte: `INCRBY key hits` +
//! `EXPIRE key ttl` per plain counter (the reference's layout, no MULTI), and one `EVALSHA` of
//! the driver script per algorithm check (one for all of a request's checks in an atomic
//! domain) with the KEYS / ARGV layout of `storage/scripts.py`. A batch takes up to three
//! round trips: `MGET` of the counters first when stop-increment mode needs them, the charge,
//! and `SCRIPT LOAD` + the refused `EVALSHA`s again when Redis had forgotten the script
//! (NOSCRIPT, after a restart or failover), as the Python topology does.

use std::sync::Arc;

use crate::algorithms::{Check, Verdict};
use crate::engine::{Decision, Engine, EngineError, Pending, Request};
use crate::memory::Increment;
use crate::resp::{parse_all, Arg, Encoder, ParseError, Reply};

/// The algorithm driver script: its SHA1 (as EVALSHA names it) and its source.
#[derive(Clone, Debug, Default)]
pub struct RedisScript {
    pub sha: String,
    pub source: String,
}

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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Get,
    Charge,
    Script,
    Done,
}

#[derive(Clone, Copy, Debug)]
enum Role {
    /// The MGET of an item.
    Get(usize),
    /// Reply slot `slot` of an item's charge.
    Charge(usize, usize),
    ScriptLoad,
    /// The retried EVALSHA of an item's reply slot.
    Retry(usize, usize),
}

struct Waiting {
    pending: Pending,
    incs: Vec<Increment>,
    needs_get: bool,
    charged: bool,
    /// The charge's replies: 2 per plain counter, then one per EVALSHA.
    replies: Vec<Option<Reply>>,
    /// Reply slots whose EVALSHA met NOSCRIPT.
    retry: Vec<usize>,
}

enum Item {
    Waiting(Box<Waiting>),
    Done(Result<Decision, EngineError>),
    Taken,
}

/// Many requests' store calls on one Redis, as one pipeline per round trip.
pub struct RedisBatch {
    script: Arc<RedisScript>,
    items: Vec<Item>,
    stage: Stage,
    out: Encoder,
    roles: Vec<Role>,
    script_loaded: bool,
    /// A round trip failed as a whole (no answer, or an answer that means "unavailable"): what
    /// counts against the endpoint's circuit breaker.
    pub endpoint_failed: bool,
}

impl Engine {
    /// Plan `requests` and prepare the first round trip of their store calls.
    pub fn redis_batch(
        &mut self,
        requests: &[Request<'_>],
        script: Arc<RedisScript>,
    ) -> RedisBatch {
        let items = requests
            .iter()
            .map(|request| match self.plan(request) {
                Err(e) => Item::Done(Err(e)),
                Ok(p) if p.checks.is_empty() => Item::Done(Ok(self.finish(p))),
                Ok(p) => {
                    let (incs, needs_get) = self.increments(&p);
                    let waiting = Waiting {
                        pending: p,
                        incs,
                        needs_get,
                        charged: false,
                        replies: Vec::new(),
                        retry: Vec::new(),
                    };
                    Item::Waiting(Box::new(waiting))
                }
            })
            .collect();
        let mut batch = RedisBatch {
            script,
            items,
            stage: Stage::Done,
            out: Encoder::default(),
            roles: Vec::new(),
            script_loaded: false,
            endpoint_failed: false,
        };
        batch.next_stage();
        batch
    }
}

impl RedisBatch {
    /// The pipeline to send next; `None` once every request is decided.
    pub fn commands(&self) -> Option<&[u8]> {
        (self.stage != Stage::Done).then_some(self.out.buf.as_slice())
    }

    /// How many replies the pipeline gets.
    pub fn expected(&self) -> usize {
        self.out.commands
    }

    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// The replies to [`RedisBatch::commands`]: exactly [`RedisBatch::expected`] of them.
    pub fn feed(&mut self, engine: &mut Engine, data: &[u8]) {
        if self.stage == Stage::Done {
            return;
        }
        let replies = match parse_all(data, self.out.commands) {
            Ok(replies) => replies,
            Err(why) => {
                let why = match why {
                    ParseError::Incomplete => format!("fewer than {} replies", self.out.commands),
                    ParseError::Invalid(why) => why,
                };
                let error = EngineError::Storage {
                    message: format!("redis: unexpected reply: {why}"),
                    transient: false,
                };
                return self.fail_stage(engine, error);
            }
        };
        if let Some(message) = replies.iter().find_map(transport_error) {
            self.endpoint_failed = true;
            let error = EngineError::Storage {
                message: format!("redis unavailable: {message}"),
                transient: true,
            };
            return self.fail_stage(engine, error);
        }
        let roles = std::mem::take(&mut self.roles);
        match self.stage {
            Stage::Get => self.got_counters(engine, &roles, replies),
            Stage::Charge => self.got_charges(engine, &roles, replies),
            Stage::Script => self.got_retries(engine, &roles, replies),
            Stage::Done => {}
        }
        self.next_stage();
    }

    /// The round trip failed (refused, reset, timed out): every request in it is answered by
    /// its failure policy.
    pub fn fail(&mut self, engine: &mut Engine, message: &str, transient: bool) {
        if self.stage == Stage::Done {
            return;
        }
        self.endpoint_failed |= transient;
        self.fail_stage(
            engine,
            EngineError::Storage {
                message: message.to_string(),
                transient,
            },
        );
    }

    /// Each request's decision or error, in order; requests not decided yet are errors.
    pub fn results(&mut self) -> Vec<Result<Decision, EngineError>> {
        self.items
            .iter_mut()
            .map(|item| match std::mem::replace(item, Item::Taken) {
                Item::Done(result) => result,
                Item::Waiting(_) | Item::Taken => Err(EngineError::Storage {
                    message: "redis batch: the request is not decided yet".into(),
                    transient: false,
                }),
            })
            .collect()
    }

    fn fail_stage(&mut self, engine: &mut Engine, error: EngineError) {
        let mut involved: Vec<usize> = self
            .roles
            .drain(..)
            .filter_map(|role| match role {
                Role::Get(i) | Role::Charge(i, _) | Role::Retry(i, _) => Some(i),
                Role::ScriptLoad => None,
            })
            .collect();
        involved.dedup();
        for i in involved {
            self.fail_item(engine, i, error.clone());
        }
        self.next_stage();
    }

    fn fail_item(&mut self, engine: &mut Engine, i: usize, error: EngineError) {
        if let Item::Waiting(mut w) = std::mem::replace(&mut self.items[i], Item::Taken) {
            let result = match engine.store_failed(&mut w.pending, error) {
                Ok(()) => Ok(engine.finish(w.pending)),
                Err(e) => Err(e),
            };
            self.items[i] = Item::Done(result);
        }
    }

    fn waiting(&mut self, i: usize) -> Option<&mut Waiting> {
        match &mut self.items[i] {
            Item::Waiting(w) => Some(w),
            _ => None,
        }
    }

    fn got_counters(&mut self, engine: &mut Engine, roles: &[Role], replies: Vec<Reply>) {
        for (role, reply) in roles.iter().zip(replies) {
            let Role::Get(i) = *role else { continue };
            let Some(w) = self.waiting(i) else { continue };
            match counter_values(&reply, w.incs.len()) {
                Ok(current) => {
                    crate::engine::stop_increment(&w.pending, &mut w.incs, &current);
                    w.needs_get = false;
                }
                Err(error) => self.fail_item(engine, i, error),
            }
        }
    }

    fn got_charges(&mut self, engine: &mut Engine, roles: &[Role], replies: Vec<Reply>) {
        let mut touched = Vec::new();
        for (role, reply) in roles.iter().zip(replies) {
            let Role::Charge(i, slot) = *role else {
                continue;
            };
            if let Some(w) = self.waiting(i) {
                w.replies[slot] = Some(reply);
            }
            if touched.last() != Some(&i) {
                touched.push(i);
            }
        }
        for i in touched {
            let Some(w) = self.waiting(i) else { continue };
            let plain = 2 * w.incs.len();
            w.retry = (plain..w.replies.len())
                .filter(|&s| is_noscript(w.replies[s].as_ref()))
                .collect();
            if w.retry.is_empty() {
                self.complete(engine, i);
            }
        }
    }

    fn got_retries(&mut self, engine: &mut Engine, roles: &[Role], replies: Vec<Reply>) {
        let mut load_error = None;
        let mut touched = Vec::new();
        for (role, reply) in roles.iter().zip(replies) {
            match *role {
                Role::ScriptLoad => {
                    if let Reply::Error(e) = reply {
                        load_error = Some(storage_error(&e));
                    }
                }
                Role::Retry(i, slot) => {
                    if let Some(w) = self.waiting(i) {
                        w.replies[slot] = Some(reply);
                        w.retry.clear();
                    }
                    touched.push(i);
                }
                _ => {}
            }
        }
        touched.dedup();
        for i in touched {
            match &load_error {
                Some(error) => self.fail_item(engine, i, error.clone()),
                None => self.complete(engine, i),
            }
        }
    }

    /// Every reply of an item's charge is in: decide it.
    fn complete(&mut self, engine: &mut Engine, i: usize) {
        let Item::Waiting(mut w) = std::mem::replace(&mut self.items[i], Item::Taken) else {
            return;
        };
        match charge_results(&w) {
            Ok((values, verdicts)) => {
                engine.settle(&mut w.pending, &values, &verdicts);
                self.items[i] = Item::Done(Ok(engine.finish(w.pending)));
            }
            Err(error) => {
                self.items[i] = Item::Waiting(w);
                self.fail_item(engine, i, error);
            }
        }
    }

    /// Encode the next round trip: the counters stop-increment mode needs, else the charges,
    /// else the EVALSHAs that met NOSCRIPT.
    fn next_stage(&mut self) {
        self.out = Encoder::default();
        self.roles.clear();
        let waiting: Vec<usize> = (0..self.items.len())
            .filter(|&i| matches!(self.items[i], Item::Waiting(_)))
            .collect();
        let any = |f: &dyn Fn(&Waiting) -> bool| {
            waiting
                .iter()
                .any(|&i| matches!(&self.items[i], Item::Waiting(w) if f(w)))
        };
        self.stage = if any(&|w| w.needs_get) {
            Stage::Get
        } else if any(&|w| !w.charged) {
            Stage::Charge
        } else if any(&|w| !w.retry.is_empty()) && !self.script_loaded {
            Stage::Script
        } else {
            Stage::Done
        };
        if self.stage == Stage::Script {
            self.script_loaded = true;
            self.out.command(&[
                Arg::Str("SCRIPT"),
                Arg::Str("LOAD"),
                Arg::Str(&self.script.source),
            ]);
            self.roles.push(Role::ScriptLoad);
        }
        for i in waiting {
            let Item::Waiting(w) = &mut self.items[i] else {
                continue;
            };
            match self.stage {
                Stage::Get if w.needs_get => {
                    let mut args = vec![Arg::Str("MGET")];
                    args.extend(w.incs.iter().map(|inc| Arg::Str(&inc.key)));
                    self.out.command(&args);
                    self.roles.push(Role::Get(i));
                }
                Stage::Charge if !w.charged => {
                    w.charged = true;
                    let slots = encode_charge(&mut self.out, &self.script, w);
                    w.replies = vec![None; slots];
                    self.roles.extend((0..slots).map(|s| Role::Charge(i, s)));
                }
                Stage::Script => {
                    let plain = 2 * w.incs.len();
                    let groups = script_groups(&w.pending);
                    for &slot in &w.retry {
                        encode_evalsha(
                            &mut self.out,
                            &self.script,
                            &w.pending,
                            &groups[slot - plain],
                        );
                        self.roles.push(Role::Retry(i, slot));
                    }
                }
                _ => {}
            }
        }
    }
}

/// The reply of a transport-class error, if `reply` is one.
fn transport_error(reply: &Reply) -> Option<String> {
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

fn is_noscript(reply: Option<&Reply>) -> bool {
    matches!(reply, Some(Reply::Error(e)) if e.starts_with("NOSCRIPT"))
}

/// A Redis error for one command: it belongs to that command, retrying will not help.
fn storage_error(message: &str) -> EngineError {
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

fn counter_values(reply: &Reply, count: usize) -> Result<Vec<i64>, EngineError> {
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
fn charge_results(w: &Waiting) -> Result<(Vec<i64>, Vec<Verdict>), EngineError> {
    let mut replies = Vec::with_capacity(w.replies.len());
    for reply in &w.replies {
        match reply {
            Some(Reply::Error(e)) => return Err(storage_error(e)),
            Some(r) => replies.push(r),
            None => return Err(unexpected("a reply is missing")),
        }
    }
    let plain = 2 * w.incs.len();
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
    let scripted = w
        .pending
        .checks
        .iter()
        .filter(|c| c.algorithm.is_some())
        .count();
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
fn encode_charge(out: &mut Encoder, script: &RedisScript, w: &Waiting) -> usize {
    for inc in &w.incs {
        out.command(&[
            Arg::Str("INCRBY"),
            Arg::Str(&inc.key),
            Arg::Int(inc.hits as i64),
        ]);
        out.command(&[Arg::Str("EXPIRE"), Arg::Str(&inc.key), Arg::Int(inc.ttl)]);
    }
    let groups = script_groups(&w.pending);
    for group in &groups {
        encode_evalsha(out, script, &w.pending, group);
    }
    2 * w.incs.len() + groups.len()
}

/// The algorithm checks per EVALSHA: all together in an atomic request, else one each.
fn script_groups(p: &Pending) -> Vec<Vec<&Check>> {
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
fn encode_evalsha(out: &mut Encoder, script: &RedisScript, p: &Pending, group: &[&Check]) {
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
