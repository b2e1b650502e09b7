//! A batch's round trips: which commands go in each, and what happens to each request when its
//! replies (or the failure of the round trip) come back.

use std::sync::Arc;

use super::commands::{
    charge_results, counter_values, encode_charge, encode_evalsha, is_noscript, script_groups,
    storage_error, transport_error,
};
use super::RedisScript;
use crate::engine::{Decision, Engine, EngineError, Pending, Request};
use crate::memory::Increment;
use crate::resp::{parse_all, Arg, Encoder, ParseError, Reply};

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
        match charge_results(&w.replies, w.incs.len(), scripted_count(&w.pending)) {
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
                    let slots = encode_charge(&mut self.out, &self.script, &w.incs, &w.pending);
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

fn scripted_count(p: &Pending) -> usize {
    p.checks.iter().filter(|c| c.algorithm.is_some()).count()
}
