//! `NativeEngine`: the engine in process, on its memory store or through Redis batches, and
//! `RedisBatch`, the two-step form of a Redis call (commands out, reply bytes in).

use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::convert::{self, decision, descriptors, error_to_py, error_value, Descriptors};
use super::rules::CompiledRules;
use crate::engine::{Engine, EngineOptions, Jitter, Request};
use crate::redis::{self, RedisScript};
use crate::rules::FailurePolicy;

#[pyclass(name = "NativeEngine", module = "sidecar._native")]
pub struct NativeEngine {
    engine: Engine,
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
    #[pyo3(signature = (domain, descriptors, hits_addend=0, now_ms=0, charge_always=false))]
    fn decide<'py>(
        &mut self,
        py: Python<'py>,
        domain: &str,
        descriptors: &Bound<'py, PyAny>,
        hits_addend: u32,
        now_ms: i64,
        charge_always: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let (descs, explicit) = convert::descriptors(descriptors)?;
        let request = Request {
            domain,
            descriptors: &descs,
            hits_addend,
            now_ms,
            charge_always,
            explicit: &explicit,
        };
        let answer = self.engine.decide(&request).map_err(error_to_py)?;
        decision(py, &answer)
    }

    /// Plan `requests` — `(domain, descriptors, hits_addend, now_ms, charge_always)` each — for
    /// Redis: the returned batch holds the commands to send.
    fn redis_batch(slf: &Bound<'_, Self>, requests: &Bound<'_, PyList>) -> PyResult<RedisBatch> {
        let mut parsed: Vec<(String, Descriptors, u32, i64, bool)> =
            Vec::with_capacity(requests.len());
        for item in requests.iter() {
            let (domain, descs, hits, now_ms, always): (String, Bound<'_, PyAny>, u32, i64, bool) =
                item.extract()?;
            parsed.push((domain, descriptors(&descs)?, hits, now_ms, always));
        }
        let mut this = slf.borrow_mut();
        if this.script.sha.is_empty() {
            return Err(PyRuntimeError::new_err(
                "redis_batch needs the engine made with script_sha and script_source",
            ));
        }
        let reqs: Vec<Request<'_>> = parsed
            .iter()
            .map(
                |(domain, (descriptors, explicit), hits_addend, now_ms, charge_always)| Request {
                    domain,
                    descriptors,
                    hits_addend: *hits_addend,
                    now_ms: *now_ms,
                    charge_always: *charge_always,
                    explicit,
                },
            )
            .collect();
        let script = this.script.clone();
        let batch = this.engine.redis_batch(&reqs, script);
        Ok(RedisBatch {
            engine: slf.clone().unbind(),
            batch,
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
/// their bytes to `feed`; repeat while `commands` is not None. Then `results()`.
#[pyclass(name = "RedisBatch", module = "sidecar._native")]
pub struct RedisBatch {
    engine: Py<NativeEngine>,
    batch: redis::RedisBatch,
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

    /// Per request, in order: its decision tuple, or the exception it ended with.
    fn results<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for result in self.batch.results() {
            match result {
                Ok(d) => out.append(decision(py, &d)?)?,
                Err(e) => out.append(error_value(py, e))?,
            }
        }
        Ok(out)
    }
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
