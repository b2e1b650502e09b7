//! The HTTP/1.1 fast path's Python face: `Http1Config` (the settings), `Http1Connection` (one
//! connection: bytes in, work out), `Http1Call` and `Http1Referral` (one request each, with
//! the methods that write its answer), and `Http1Service` (the native engine answering the
//! calls inside `feed`).
//!
//! ```text
//! Http1Connection(config, service=None)
//! feed(data, token=None) -> (ready, items, handoff, closed, held)
//!     with a `service`, its engine answers every call inside feed (items are then only the
//!     referrals); the calls it holds for Redis (`held` of them) wait in its queue with
//!     `token`, handed back by `RedisBatch.deliver` once their answers are in place
//! output() -> bytes: the answers that may be sent now (after a delivery)
//! fill(slot, answer) -> bytes: a referral's (or a Python-decided call's) answer
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::engine::{Decision, EngineError};
use crate::http1::answer::{Families, LimitView, StatusView};
use crate::http1::check::BodyLimits;
use crate::http1::conn::{Conn, End, Event};
use crate::http1::forward::ForwardOptions;
use crate::http1::outbox::Outbox;
use crate::http1::response::{Framing, CONTINUE};
use crate::http1::routes::Routes;
use crate::http1::serve::{work, Call, CallKind, Config, Referral, Work};
use crate::http1::service::{self, Held, METHODS};

use super::engine::NativeEngine;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Http1Config>()?;
    m.add_class::<Http1Connection>()?;
    m.add_class::<Http1Call>()?;
    m.add_class::<Http1Referral>()?;
    m.add_class::<Http1Service>()?;
    m.add("HTTP1_METHODS", METHODS.to_vec())?;
    Ok(())
}

#[pyclass(name = "Http1Config", module = "sidecar._native", frozen)]
pub struct Http1Config {
    config: Arc<Config>,
}

#[pymethods]
impl Http1Config {
    /// RestOptions' fields, the header families, full mode, /json's body limit, and what
    /// every answer says the same way (aiohttp's Server field, the reason phrases).
    #[new]
    #[pyo3(signature = (*, full, max_body_bytes, json_max_body_bytes, max_descriptors,
        max_entries, max_hits, identifier_header, xff_index, namespace_header,
        default_namespace, hash_identifier, deny_status, headers, server, reasons))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        full: bool,
        max_body_bytes: usize,
        json_max_body_bytes: usize,
        max_descriptors: usize,
        max_entries: usize,
        max_hits: u64,
        identifier_header: String,
        xff_index: i64,
        namespace_header: String,
        default_namespace: String,
        hash_identifier: bool,
        deny_status: u16,
        headers: Vec<String>,
        server: String,
        reasons: Vec<(u16, String)>,
    ) -> PyResult<Http1Config> {
        let mut families = Families::default();
        for family in &headers {
            match family.as_str() {
                "ietf" => families.ietf = true,
                "x" => families.x = true,
                "retry-after" => families.retry_after = true,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "headers: {other:?} is not a header family; expected ietf, x, retry-after"
                    )))
                }
            }
        }
        if xff_index == 0 {
            return Err(PyValueError::new_err("xff_index: 0 is not a position"));
        }
        Ok(Http1Config {
            config: Arc::new(Config {
                routes: Routes {
                    full,
                    max_body_bytes,
                    json_max_body_bytes,
                },
                limits: BodyLimits {
                    max_descriptors,
                    max_entries,
                    max_hits,
                },
                forward: ForwardOptions {
                    identifier_header,
                    xff_index,
                    namespace_header,
                    default_namespace,
                    hash_identifier,
                    deny_status,
                },
                families,
                framing: Framing { server, reasons },
            }),
        })
    }
}

#[pyclass(name = "Http1Connection", module = "sidecar._native")]
pub struct Http1Connection {
    config: Arc<Config>,
    conn: Conn,
    outbox: Outbox,
    service: Option<Py<Http1Service>>,
    /// Items handed to Python whose answers are not in yet. While there are any, the service
    /// decides no call of this connection: those go to Python after them, so every request
    /// is charged in the order it came, as the general path charges them.
    referred: usize,
}

/// The service's side of one feed: the service and its engine, borrowed for the feed, and
/// the clock read once for all its calls.
struct Deciding<'py> {
    service: PyRefMut<'py, Http1Service>,
    engine: PyRefMut<'py, NativeEngine>,
    now: f64,
    held: Vec<(u64, Held)>,
}

#[pymethods]
impl Http1Connection {
    #[new]
    #[pyo3(signature = (config, service=None))]
    fn new(config: &Http1Config, service: Option<Py<Http1Service>>) -> Http1Connection {
        let config = config.config.clone();
        Http1Connection {
            conn: Conn::new(config.routes.clone()),
            config,
            outbox: Outbox::default(),
            service,
            referred: 0,
        }
    }

    /// Read `data`: `(ready, items, handoff, closed, held)`. `ready`: the answers that may be
    /// sent now (those made while reading: the service's, an interim `100 Continue`), in
    /// order. `items`: an `Http1Referral` per request left to Python, or an `Http1Call` (without
    /// a service, or behind a referral still waiting), each holding its answer's place
    /// (`slot`, for `fill`). `handoff`: the bytes
    /// from the first request this path does not answer (the general path reads them and the
    /// rest of the connection), else None. `closed`: a request ended the connection. `held`:
    /// calls the service holds for a Redis batch (queued with `token`).
    #[pyo3(signature = (data, token=None))]
    fn feed<'py>(
        slf: &Bound<'py, Self>,
        data: &[u8],
        token: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let items = PyList::empty(py);
        let mut this = slf.try_borrow_mut()?;
        let service = this.service.as_ref().map(|s| s.clone_ref(py));
        let engine = match &service {
            Some(s) => Some(s.bind(py).try_borrow()?.engine.clone_ref(py)),
            None => None,
        };
        let mut deciding = match (&service, &engine) {
            (Some(service), Some(engine)) => {
                let service = service.bind(py).try_borrow_mut()?;
                if service.service.redis && token.is_none() {
                    return Err(PyValueError::new_err(
                        "feed: a connection whose service holds calls for Redis needs a token",
                    ));
                }
                let now = clock_seconds(py, service.clock.as_ref())?;
                Some(Deciding {
                    service,
                    engine: engine.bind(py).try_borrow_mut()?,
                    now,
                    held: Vec::new(),
                })
            }
            _ => None,
        };
        let mut failed: Option<PyErr> = None;
        let Http1Connection {
            config,
            conn,
            outbox,
            referred,
            ..
        } = &mut *this;
        let end = guard(|| {
            conn.feed(data, &mut |event| {
                if failed.is_some() {
                    return;
                }
                let request = match event {
                    Event::Continue => return outbox.ready(CONTINUE.to_vec()),
                    Event::Request(request) => request,
                };
                let deciding = deciding.as_mut().filter(|_| *referred == 0);
                let item = match (work(request, config), deciding) {
                    (Work::Call(call), Some(d)) => return decide(d, config, outbox, call),
                    (Work::Call(call), None) => {
                        let slot = outbox.wait();
                        let call = Http1Call {
                            config: config.clone(),
                            call,
                            slot,
                        };
                        Bound::new(py, call).map(Bound::into_any)
                    }
                    (Work::Refer(referral), _) => {
                        let slot = outbox.wait();
                        let referral = Http1Referral {
                            config: config.clone(),
                            referral,
                            slot,
                        };
                        Bound::new(py, referral).map(Bound::into_any)
                    }
                };
                *referred += 1;
                if let Err(e) = item.and_then(|item| items.append(item)) {
                    failed = Some(e);
                }
            })
        })?;
        let held = match deciding {
            Some(d) => queue_held(d, slf, token)?,
            None => 0,
        };
        if let Some(e) = failed {
            return Err(e);
        }
        let (handoff, closed) = match end {
            End::Open => (None, false),
            End::Close => (None, true),
            End::Handoff(rest) => (Some(PyBytes::new(py, &rest)), false),
        };
        let ready = PyBytes::new(py, &this.outbox.take_ready());
        (ready, items, handoff, closed, held).into_pyobject(py)
    }

    /// The answers that may be sent now (those a Redis batch delivered since the last call).
    fn output<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.outbox.take_ready())
    }

    /// The answer of the item whose `slot` this is: the answers that may be sent now.
    fn fill<'py>(
        &mut self,
        py: Python<'py>,
        slot: u64,
        answer: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        if !self.outbox.fill(slot, answer.to_vec()) {
            return Err(PyValueError::new_err(format!(
                "slot {slot} is not waiting for an answer"
            )));
        }
        self.referred = self.referred.saturating_sub(1);
        Ok(PyBytes::new(py, &self.outbox.take_ready()))
    }

    /// Answers not sent yet (made, or still to make).
    #[getter]
    fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// Bytes held for a request not complete yet.
    #[getter]
    fn buffered(&self) -> usize {
        self.conn.buffered()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(service) = &self.service {
            visit.call(service)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.service = None;
    }
}

/// A call for the service: answered now (its answer takes the next place), or held for Redis
/// (its place waits).
fn decide(d: &mut Deciding<'_>, config: &Arc<Config>, outbox: &mut Outbox, call: Call) {
    let now_ms = (d.now * 1000.0) as i64;
    let mut out = Vec::with_capacity(512);
    let engine = &mut d.engine.engine;
    match d
        .service
        .service
        .offer(engine, config, call, now_ms, d.now, &mut out)
    {
        None => outbox.ready(out),
        Some(held) => d.held.push((outbox.wait(), held)),
    }
}

/// Move the calls the service held during a feed into its queue, with their connection; how
/// many there were.
fn queue_held(
    mut d: Deciding<'_>,
    conn: &Bound<'_, Http1Connection>,
    token: Option<&Bound<'_, PyAny>>,
) -> PyResult<usize> {
    let count = d.held.len();
    if count == 0 {
        return Ok(0);
    }
    let Some(token) = token else {
        unreachable!("feed refuses a service that holds calls without a token");
    };
    for (slot, held) in d.held.drain(..) {
        d.service.queue.push(Queued {
            token: token.clone().unbind(),
            conn: conn.clone().unbind(),
            slot,
            held,
        });
    }
    Ok(count)
}

/// A request for the engine: its arguments, and the methods that answer it.
#[pyclass(name = "Http1Call", module = "sidecar._native", frozen)]
pub struct Http1Call {
    config: Arc<Config>,
    call: Call,
    slot: u64,
}

/// `(code, limit, remaining, reset_seconds, reset_ms)`, limit `(name, requests_per_unit,
/// unit, window_ms)` or None, reset_ms None when unknown.
type StatusTuple = (u8, Option<(String, u32, u8, i64)>, i64, i64, Option<i64>);

#[pymethods]
impl Http1Call {
    /// Where the answer goes (`Http1Connection.fill`).
    #[getter]
    fn slot(&self) -> u64 {
        self.slot
    }

    /// check, report, forward_auth or json.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.call.kind {
            CallKind::Check { .. } => "check",
            CallKind::Report { .. } => "report",
            CallKind::ForwardAuth { .. } => "forward_auth",
            CallKind::Json => "json",
        }
    }

    #[getter]
    fn domain(&self) -> &str {
        &self.call.domain
    }

    /// Each descriptor's entries, as tuples of (key, value) tuples.
    #[getter]
    fn descriptors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for d in &self.call.descriptors {
            list.append(PyTuple::new(py, d.entries.iter().map(|(k, v)| (k, v)))?)?;
        }
        Ok(list)
    }

    /// REST: each descriptor's hits; json: the request's hits_addend.
    #[getter]
    fn hits(&self) -> u64 {
        self.call.hits
    }

    /// The engine's decision as this request's answer.
    fn answer<'py>(
        &self,
        py: Python<'py>,
        overall: u8,
        statuses: Vec<StatusTuple>,
        headers: Vec<(String, String)>,
        now: f64,
    ) -> Bound<'py, PyBytes> {
        let views: Vec<StatusView<'_>> = statuses
            .iter()
            .map(
                |(code, limit, remaining, reset_seconds, reset_ms)| StatusView {
                    code: *code,
                    limit: limit
                        .as_ref()
                        .map(|(name, rpu, unit, window_ms)| LimitView {
                            name,
                            requests_per_unit: *rpu,
                            unit: *unit,
                            window_ms: *window_ms,
                        }),
                    remaining: *remaining,
                    reset_seconds: *reset_seconds,
                    reset_ms: *reset_ms,
                },
            )
            .collect();
        let mut out = Vec::with_capacity(512);
        self.call
            .answer(&self.config, overall, &views, &headers, now, &mut out);
        PyBytes::new(py, &out)
    }

    /// The answer of a call the service failed: its HTTP status and message.
    fn failure<'py>(&self, py: Python<'py>, status: u16, message: &str) -> Bound<'py, PyBytes> {
        let mut out = Vec::with_capacity(256);
        self.call.failure(&self.config, status, message, &mut out);
        PyBytes::new(py, &out)
    }

    /// Any answer to this request.
    fn frame<'py>(
        &self,
        py: Python<'py>,
        status: u16,
        headers: Vec<(String, String)>,
        body: &[u8],
    ) -> Bound<'py, PyBytes> {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut out = Vec::with_capacity(body.len() + 256);
        self.call
            .frame(&self.config, status, &pairs, body, &mut out);
        PyBytes::new(py, &out)
    }
}

/// A request the general path's code answers.
#[pyclass(name = "Http1Referral", module = "sidecar._native", frozen)]
pub struct Http1Referral {
    config: Arc<Config>,
    referral: Referral,
    slot: u64,
}

#[pymethods]
impl Http1Referral {
    /// Where the answer goes (`Http1Connection.fill`).
    #[getter]
    fn slot(&self) -> u64 {
        self.slot
    }

    /// check, report, forward_auth, json, key_verify or key_forward_auth.
    #[getter]
    fn route(&self) -> &'static str {
        self.referral.route.name()
    }

    #[getter]
    fn method(&self) -> &'static str {
        self.referral.method.name()
    }

    /// Path and query, as sent.
    #[getter]
    fn target(&self) -> &str {
        &self.referral.target
    }

    #[getter]
    fn headers(&self) -> Vec<(String, String)> {
        self.referral.headers.clone()
    }

    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.referral.body)
    }

    fn frame<'py>(
        &self,
        py: Python<'py>,
        status: u16,
        headers: Vec<(String, String)>,
        body: &[u8],
    ) -> Bound<'py, PyBytes> {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut out = Vec::with_capacity(body.len() + 256);
        self.referral
            .frame(&self.config, status, &pairs, body, &mut out);
        PyBytes::new(py, &out)
    }
}

/// A held call, its connection, where its answer goes there, and the caller's token for that
/// connection.
pub(crate) struct Queued {
    pub token: Py<PyAny>,
    pub conn: Py<Http1Connection>,
    pub slot: u64,
    pub held: Held,
}

/// `(requests, errors, latency buckets, latency sum, in flight)`.
type MetricsTuple = (u64, Vec<u64>, Vec<u64>, f64, i64);

/// The native engine behind the HTTP/1.1 fast path (`http1/service.rs`), given to each
/// `Http1Connection`. Calls it holds for Redis wait in its queue until
/// `NativeEngine.redis_batch(..., http1=service)` takes them.
#[pyclass(name = "Http1Service", module = "sidecar._native")]
pub struct Http1Service {
    pub(crate) engine: Py<NativeEngine>,
    pub(crate) service: service::Http1Service,
    pub(crate) queue: Vec<Queued>,
    /// A clock for the engine and the answers (seconds since the epoch), as the Python
    /// engine's is injected; None: the system's wall clock.
    clock: Option<Py<PyAny>>,
}

#[pymethods]
impl Http1Service {
    /// `redis`: hold calls for Redis batches instead of deciding them on the engine's memory
    /// store; `clock`: the engine's clock (seconds since the epoch; tests give a fake one).
    #[new]
    #[pyo3(signature = (engine, *, redis=false, clock=None))]
    fn new(engine: Py<NativeEngine>, redis: bool, clock: Option<Py<PyAny>>) -> Http1Service {
        Http1Service {
            engine,
            service: service::Http1Service::new(redis),
            queue: Vec::new(),
            clock,
        }
    }

    /// Calls waiting for a Redis batch.
    #[getter]
    fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Per endpoint of `HTTP1_METHODS`, the request metrics of the calls answered here since
    /// the last call, and start over: `(requests, errors, latency buckets, latency sum, in
    /// flight)` as `FastService.take_metrics`.
    fn take_metrics(&mut self) -> Vec<MetricsTuple> {
        self.service
            .metrics
            .iter_mut()
            .map(|m| {
                let t = m.take();
                (
                    t.requests,
                    t.errors.to_vec(),
                    t.buckets.to_vec(),
                    t.latency_sum,
                    t.in_flight,
                )
            })
            .collect()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.engine)?;
        if let Some(clock) = &self.clock {
            visit.call(clock)?;
        }
        for queued in &self.queue {
            visit.call(&queued.token)?;
            visit.call(&queued.conn)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.queue.clear();
        self.clock = None;
    }
}

/// Answer `queued` (calls of a finished Redis batch, with their `results` in order) on their
/// connections; append the distinct tokens of those connections to `tokens`.
pub(crate) fn deliver(
    py: Python<'_>,
    service: &Py<Http1Service>,
    queued: Vec<Queued>,
    results: &mut [Option<Result<Decision, EngineError>>],
    tokens: &Bound<'_, PyList>,
) -> PyResult<()> {
    let mut service = service.try_borrow_mut(py)?;
    let now = clock_seconds(py, service.clock.as_ref())?;
    for (q, result) in queued.into_iter().zip(results.iter_mut()) {
        let result = result.take().unwrap_or_else(|| {
            Err(EngineError::Storage {
                message: "redis batch: the call's result was taken already".into(),
                transient: false,
            })
        });
        // A connection being read now cannot be one whose batch is done; were it so, the
        // answer is dropped rather than the batch failing.
        if let Ok(mut conn) = q.conn.try_borrow_mut(py) {
            let mut out = Vec::with_capacity(512);
            let config = conn.config.clone();
            service
                .service
                .finish(&config, &q.held, &result, now, &mut out);
            conn.outbox.fill(q.slot, out);
        }
        if !tokens.iter().any(|t| t.as_ptr() == q.token.as_ptr()) {
            tokens.append(q.token)?;
        }
    }
    Ok(())
}

/// Now in seconds since the epoch, on `clock` or the system's.
fn clock_seconds(py: Python<'_>, clock: Option<&Py<PyAny>>) -> PyResult<f64> {
    match clock {
        None => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())),
        Some(clock) => clock.call0(py)?.extract(py),
    }
}

/// Run `work`, turning a panic (a bug) into RuntimeError: an ordinary exception whose
/// connection is closed, where PyO3's PanicException would escape the protocol.
fn guard<T>(work: impl FnOnce() -> T) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(work)).map_err(|_| {
        PyRuntimeError::new_err(
            "the native HTTP/1.1 reader failed (a bug: the panic is logged above)",
        )
    })
}
