//! `NativeEngine`: the engine in process, on its memory store or through Redis batches, and
//! `RedisBatch`, the two-step form of a Redis call (commands out, reply bytes in).

use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use pyo3::{PyTraverseError, PyVisit};

use super::convert::{self, decision, descriptors, error_to_py, error_value, Descriptors};
use super::rules::{CompiledRules, OwnedDomain};
use super::service::{FastService, Queued};
use crate::engine::{Decision, Engine, EngineError, EngineOptions, Jitter, Request};
use crate::redis::{self, RedisScript};
use crate::rules::FailurePolicy;

#[pyclass(name = "NativeEngine", module = "sidecar._native")]
pub struct NativeEngine {
    pub(crate) engine: Engine,
    script: Arc<RedisScript>,
}

#[pymethods]
impl NativeEngine {
    /// The engine options of `limiter/engine.py` (`EngineOptions`), the service's failure
    /// policy, the local cache's budget (0: off), the driver script for Redis, and the jitter:
    /// `None` draws it at random, a list of integers gives it in turn (for tests).
    #[new]
    #[pyo3(signature = (*, cache_key_prefix="", near_limit_ratio=0.8, shadow_mode=false,
        quota_mode=false, stop_increment_when_over_limit=false, expiration_jitter_max_seconds=300,
        response_headers=false, limit_header="RateLimit-Limit", remaining_header="RateLimit-Remaining",
        reset_header="RateLimit-Reset", failure_policy="unavailable", local_cache_bytes=0,
        max_stats_keys=65_536, script_sha="", script_source="", jitter=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        cache_key_prefix: &str,
        near_limit_ratio: f64,
        shadow_mode: bool,
        quota_mode: bool,
        stop_increment_when_over_limit: bool,
        expiration_jitter_max_seconds: u64,
        response_headers: bool,
        limit_header: &str,
        remaining_header: &str,
        reset_header: &str,
        failure_policy: &str,
        local_cache_bytes: usize,
        max_stats_keys: usize,
        script_sha: &str,
        script_source: &str,
        jitter: Option<Vec<u64>>,
    ) -> PyResult<NativeEngine> {
        let failure_policy = FailurePolicy::from_name(failure_policy).ok_or_else(|| {
            PyValueError::new_err(format!(
                "failure_policy '{failure_policy}' is not a failure policy; expected one of allow, deny, unavailable, local"
            ))
        })?;
        let options = EngineOptions {
            cache_key_prefix: cache_key_prefix.into(),
            near_limit_ratio,
            shadow_mode,
            quota_mode,
            stop_increment_when_over_limit,
            expiration_jitter_max_seconds,
            response_headers,
            limit_header: limit_header.into(),
            remaining_header: remaining_header.into(),
            reset_header: reset_header.into(),
            failure_policy,
            local_cache_bytes,
            max_stats_keys,
        };
        let jitter = match jitter {
            None => Jitter::Random(fastrand::Rng::new()),
            Some(values) if values.is_empty() => {
                return Err(PyValueError::new_err(
                    "jitter: give at least one value, or None",
                ))
            }
            Some(values) => Jitter::Fixed { values, next: 0 },
        };
        let script = Arc::new(RedisScript {
            sha: script_sha.into(),
            source: script_source.into(),
        });
        Ok(NativeEngine {
            engine: Engine::new(options, jitter),
            script,
        })
    }

    /// Swap in new rules; Redis batches already planned keep the ones they started with.
    fn set_rules(&mut self, rules: &CompiledRules) {
        self.engine.set_rules(rules.rules.clone());
    }

    /// Check and charge `descriptors` of `domain` on the memory store at `now_ms`:
    /// `(overall, statuses, headers)` (see `STATUS_FIELDS`).
    /// `options`: a domain the caller owns (`DomainOptions`), whose descriptors' own limits
    /// apply without the rules.
    #[pyo3(signature = (domain, descriptors, hits_addend=0, now_ms=0, charge_always=false,
                        options=None))]
    #[allow(clippy::too_many_arguments)]
    fn decide<'py>(
        &mut self,
        py: Python<'py>,
        domain: &str,
        descriptors: &Bound<'py, PyAny>,
        hits_addend: u32,
        now_ms: i64,
        charge_always: bool,
        options: Option<PyRef<'py, OwnedDomain>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let (descs, explicit) = convert::descriptors(descriptors)?;
        let request = Request {
            domain,
            descriptors: &descs,
            hits_addend,
            now_ms,
            charge_always,
            explicit: &explicit,
            options: options.as_ref().map(|o| &o.options),
        };
        let answer = self.engine.decide(&request).map_err(error_to_py)?;
        decision(py, &answer)
    }

    /// Plan `requests` — `(domain, descriptors, hits_addend, now_ms, charge_always[,
    /// options])` each — and the calls `service` (a `FastService`) holds for Redis, as one
    /// batch: it holds the commands to send. A request whose descriptors cannot be read ends
    /// with its RequestError alone.
    #[pyo3(signature = (requests, service=None))]
    fn redis_batch(slf: &Bound<'_, Self>, requests: &Bound<'_, PyList>,
                   service: Option<Bound<'_, FastService>>) -> PyResult<RedisBatch> {
        let mut parsed: Vec<Result<Parsed, PyErr>> = Vec::with_capacity(requests.len());
        for item in requests.iter() {
            parsed.push(parse_request(&item));
        }
        let queued = match &service {
            Some(s) => std::mem::take(&mut s.borrow_mut().queue),
            None => Vec::new(),
        };
        let mut this = slf.borrow_mut();
        if this.script.sha.is_empty() {
            return Err(PyRuntimeError::new_err(
                "redis_batch needs the engine made with script_sha and script_source",
            ));
        }
        let mut reqs: Vec<Request<'_>> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(|p| Request {
                domain: &p.domain,
                descriptors: &p.descriptors.0,
                hits_addend: p.hits_addend,
                now_ms: p.now_ms,
                charge_always: p.charge_always,
                explicit: &p.descriptors.1,
                options: p.options.as_ref().map(|o| &o.get().options),
            })
            .collect();
        reqs.extend(queued.iter().map(|q| q.call.engine_request()));
        let script = this.script.clone();
        let batch = this.engine.redis_batch(&reqs, script);
        drop(reqs);
        let python = parsed.into_iter().map(|p| p.err()).collect();
        Ok(RedisBatch {
            engine: slf.clone().unbind(),
            batch,
            python,
            queued,
            service: service.map(|s| s.unbind()),
            done: Vec::new(),
        })
    }

    /// Everything counted since the last call, and start over: `(rules, domain_not_found,
    /// global_shadow, local_cache_hits, policy_decisions, folded)` with `rules` as
    /// `(domain, stats_key, total, over, near, within, shadow, over_with_local_cache)` tuples.
    fn take_stats<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let s = self.engine.take_stats();
        let rules = PyList::empty(py);
        for (domain, key, c) in &s.rules {
            rules.append((
                domain,
                key,
                c.total,
                c.over,
                c.near,
                c.within,
                c.shadow,
                c.cache_hits,
            ))?;
        }
        let policy: Vec<(&str, &str, u64)> = s
            .policy_decisions
            .iter()
            .map(|(d, p, n)| (d.as_str(), *p, *n))
            .collect();
        (
            rules,
            s.domain_not_found,
            s.global_shadow,
            s.local_cache_hits,
            policy,
            s.folded,
        )
            .into_pyobject(py)
    }

    /// The local cache: `(entries, bytes, hits, misses, evictions)`, or None when it is off.
    fn local_cache_info(&self) -> Option<(usize, usize, u64, u64, u64)> {
        self.engine
            .local_cache()
            .map(|c| (c.len(), c.bytes, c.hits, c.misses, c.evictions))
    }

    /// Keys held by the memory store.
    fn __len__(&self) -> usize {
        self.engine.store_len()
    }
}

/// The store calls of planned requests on Redis: send `commands`, read `expected` replies, hand
/// their bytes to `feed`; repeat while `commands` is not None. Then `results()` (the requests
/// given in Python) and `deliver()` (the calls of the fast transport's connections).
#[pyclass(name = "RedisBatch", module = "sidecar._native")]
pub struct RedisBatch {
    engine: Py<NativeEngine>,
    batch: redis::RedisBatch,
    /// Per request given in Python: None, or the error reading it (it is not in the batch).
    python: Vec<Option<PyErr>>,
    queued: Vec<Queued>,
    service: Option<Py<FastService>>,
    /// The batch's results once taken (the Python requests first, then the queued calls).
    done: Vec<Option<Result<Decision, EngineError>>>,
}

impl RedisBatch {
    /// The batch's results, taken once it is over.
    fn take_done(&mut self) {
        if self.done.is_empty() {
            self.done = self.batch.results().into_iter().map(Some).collect();
        }
    }
}

#[pymethods]
impl RedisBatch {
    /// The pipeline to send next (RESP bytes); None once every request is decided.
    #[getter]
    fn commands<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.batch.commands().map(|c| PyBytes::new(py, c))
    }

    /// How many replies the pipeline gets.
    #[getter]
    fn expected(&self) -> usize {
        self.batch.expected()
    }

    /// A round trip failed as a whole: it counts against the endpoint's breaker.
    #[getter]
    fn endpoint_failed(&self) -> bool {
        self.batch.endpoint_failed
    }

    /// How many calls of the fast transport's connections the batch holds.
    #[getter]
    fn held(&self) -> usize {
        self.queued.len()
    }

    /// The bytes of exactly `expected` replies to `commands`.
    fn feed(&mut self, py: Python<'_>, replies: &[u8]) {
        let mut engine = self.engine.borrow_mut(py);
        self.batch.feed(&mut engine.engine, replies);
    }

    /// The round trip failed (refused, reset, timed out): the failure policies answer.
    fn fail(&mut self, py: Python<'_>, message: &str, transient: bool) {
        let mut engine = self.engine.borrow_mut(py);
        self.batch.fail(&mut engine.engine, message, transient);
    }

    /// Per request given in Python, in order: its decision tuple, or the exception it ended
    /// with.
    fn results<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.take_done();
        let out = PyList::empty(py);
        let mut done = self.done.iter_mut();
        for unread in &self.python {
            if let Some(error) = unread {
                out.append(error.clone_ref(py).into_value(py))?;
                continue;
            }
            match done.next().and_then(Option::take) {
                Some(Ok(d)) => out.append(decision(py, &d)?)?,
                Some(Err(e)) => out.append(error_value(py, e))?,
                None => out.append(error_value(py, EngineError::Storage {
                    message: "redis batch: the request's result was taken already".into(),
                    transient: false,
                }))?,
            }
        }
        Ok(out)
    }

    /// Answer the queued calls on their connections (`now`: the loop's clock); the distinct
    /// tokens of the connections that got answers, so their owners write them out.
    fn deliver<'py>(&mut self, py: Python<'py>, now: f64) -> PyResult<Bound<'py, PyList>> {
        self.take_done();
        let tokens = PyList::empty(py);
        let Some(service) = &self.service else { return Ok(tokens) };
        let mut service = service.borrow_mut(py);
        let read = self.python.iter().filter(|p| p.is_none()).count();
        let queued = std::mem::take(&mut self.queued);
        let mut last: Option<*mut pyo3::ffi::PyObject> = None;
        for (q, result) in queued.into_iter().zip(self.done[read..].iter_mut()) {
            let result = result.take().unwrap_or_else(|| Err(EngineError::Storage {
                message: "redis batch: the call's result was taken already".into(),
                transient: false,
            }));
            let answer = service.service.finish(&q.call, &result);
            if let Ok(mut wire) = q.wire.try_borrow_mut(py) {
                wire.inner.respond(q.call.stream_id, &answer, now);
            }
            // Calls of one connection are queued together (one feed): one token per run.
            if last != Some(q.token.as_ptr()) {
                last = Some(q.token.as_ptr());
                if !tokens.iter().any(|t| t.as_ptr() == q.token.as_ptr()) {
                    tokens.append(q.token)?;
                }
            }
        }
        Ok(tokens)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.engine)?;
        if let Some(service) = &self.service {
            visit.call(service)?;
        }
        for queued in &self.queued {
            visit.call(&queued.token)?;
            visit.call(&queued.wire)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.queued.clear();
        self.service = None;
    }
}

/// A request given in Python, read.
struct Parsed {
    domain: String,
    descriptors: Descriptors,
    hits_addend: u32,
    now_ms: i64,
    charge_always: bool,
    options: Option<Py<OwnedDomain>>,
}

fn parse_request(item: &Bound<'_, PyAny>) -> PyResult<Parsed> {
    let t = item.cast::<PyTuple>()?;
    let options = match t.len() {
        5 => None,
        6 => {
            let o = t.get_item(5)?;
            if o.is_none() { None } else { Some(o.cast::<OwnedDomain>()?.clone().unbind()) }
        }
        n => {
            return Err(PyValueError::new_err(format!(
                "a request has 5 or 6 fields, not {n}"
            )))
        }
    };
    Ok(Parsed {
        domain: t.get_item(0)?.extract()?,
        descriptors: descriptors(&t.get_item(1)?)?,
        hits_addend: t.get_item(2)?.extract()?,
        now_ms: t.get_item(3)?.extract()?,
        charge_always: t.get_item(4)?.extract()?,
        options,
    })
}

/// Where the `count`-th RESP reply from `start` ends in `data`, or None while incomplete;
/// ValueError when the bytes are not RESP.
#[pyfunction]
#[pyo3(signature = (data, count, start=0))]
fn reply_end(data: &[u8], count: usize, start: usize) -> PyResult<Option<usize>> {
    crate::resp::reply_end(data, count, start).map_err(PyValueError::new_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    convert::register(m)?;
    m.add_class::<NativeEngine>()?;
    m.add_class::<RedisBatch>()?;
    m.add_function(wrap_pyfunction!(reply_end, m)?)?;
    Ok(())
}
