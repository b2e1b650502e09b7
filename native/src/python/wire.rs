//! `sidecar._native.H2Connection`: the wire side of the fast transport for Python.
//!
//! One object per accepted socket. Python keeps the socket, the timers and the engine; every
//! method takes the loop's clock and returns the bytes to write. Calls cross as tuples:
//!
//! ```text
//! feed(data, now, token) -> (bytes, calls, cancelled, close, held)
//!     with a `service` (FastService), its engine answers rate-limit and health calls inside
//!     feed; calls it holds for Redis (`held` of them) wait in its queue with `token`, handed
//!     back by `RedisBatch.deliver` once answered
//! output() -> (bytes, close): what answers delivered outside feed made
//!     calls: [(stream_id, kind, payload, deadline or None)]
//!       kind RATE_LIMIT: payload (domain, descriptors, hits_addend), each descriptor
//!                        (entries ((key, value), ...), hits_addend or None,
//!                         (requests_per_unit, unit) or None)
//!       kind HEALTH:     payload the service name
//!       kind MALFORMED_RATE_LIMIT / MALFORMED_HEALTH: payload the decoder's message
//! respond(answers, now) -> (bytes, close, problems)
//!     answers: [(stream_id, kind, value)]
//!       kind RATE_LIMIT: (overall_code, [(code, (name, requests_per_unit, unit) or None,
//!                         limit_remaining, reset_ms)], [(header, value)])
//!       kind HEALTH:     a grpc.health.v1 ServingStatus number
//!       kind ERROR:      (grpc status code, message)
//!     problems: texts of answers that could not be read (their calls end INTERNAL)
//! tick(now, write_stalled) -> (bytes, action, cancelled)   action: CONTINUE, CLOSE or ABORT
//! drain(now) -> (bytes, close); eof() -> keep open?; fail(code, message) -> bytes
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::rls::{Code, CurrentLimit, DescriptorStatus, RateLimitRequest, RateLimitResponse, Unit};
use crate::wire::error::ErrorCode;
use crate::wire::grpc::Status;
use crate::wire::proto::ServingStatus;
use crate::wire::request::Method;
use crate::wire::{Answer, Call, Connection, DeferAll, Options, Payload, TickAction};

use super::service::{FastService, Queued};

const RATE_LIMIT: u8 = 0;
const HEALTH: u8 = 1;
const MALFORMED_RATE_LIMIT: u8 = 2;
const MALFORMED_HEALTH: u8 = 3;
const ERROR: u8 = 2;
const INTERNAL: &str = "internal error; see the sidecar log";

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<H2Connection>()?;
    m.add("RATE_LIMIT", RATE_LIMIT)?;
    m.add("HEALTH", HEALTH)?;
    m.add("MALFORMED_RATE_LIMIT", MALFORMED_RATE_LIMIT)?;
    m.add("MALFORMED_HEALTH", MALFORMED_HEALTH)?;
    m.add("ERROR", ERROR)?;
    m.add("CONTINUE", TickAction::Continue as u8)?;
    m.add("CLOSE", TickAction::Close as u8)?;
    m.add("ABORT", TickAction::Abort as u8)?;
    Ok(())
}

#[pyclass(module = "sidecar._native")]
pub struct H2Connection {
    pub(crate) inner: Connection,
    service: Option<Py<FastService>>,
}

type Descriptors<'py> = Bound<'py, PyTuple>;
type Fed<'py> = (Bound<'py, PyBytes>, Bound<'py, PyList>, Vec<u32>, bool, usize);
type RawStatus = (u8, Option<(String, u32, u8)>, u32, u64);
type RawResponse = (u8, Vec<RawStatus>, Vec<(String, String)>);

#[pymethods]
impl H2Connection {
    #[new]
    #[pyo3(signature = (*, now, max_concurrent_streams, max_message_size, max_header_list_size,
                        max_header_block_size, stream_window, connection_window,
                        max_buffered_bytes, handshake_timeout, idle_timeout, request_timeout,
                        write_timeout, drain_ping_timeout, service=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(now: f64, max_concurrent_streams: usize, max_message_size: usize,
           max_header_list_size: usize, max_header_block_size: usize, stream_window: i64,
           connection_window: i64, max_buffered_bytes: i64, handshake_timeout: f64,
           idle_timeout: f64, request_timeout: f64, write_timeout: f64, drain_ping_timeout: f64,
           service: Option<Py<FastService>>) -> H2Connection {
        let options = Options { max_concurrent_streams, max_message_size, max_header_list_size,
                                max_header_block_size, stream_window, connection_window,
                                max_buffered_bytes, handshake_timeout, idle_timeout,
                                request_timeout, write_timeout, drain_ping_timeout };
        H2Connection { inner: Connection::new(options, now), service }
    }

    #[pyo3(signature = (data, now, token=None))]
    fn feed<'py>(slf: &Bound<'py, Self>, data: &[u8], now: f64,
                 token: Option<&Bound<'py, PyAny>>) -> PyResult<Fed<'py>> {
        let py = slf.py();
        let mut this = slf.borrow_mut();
        let (feed, held) = match this.service.as_ref().map(|s| s.clone_ref(py)) {
            None => (guard(|| this.inner.feed(data, now, wall_ms(), &mut DeferAll))?, 0),
            Some(service) => {
                let now_ms = service.borrow(py).now_ms(py)?;
                let mut service = service.borrow_mut(py);
                let engine = service.engine.clone_ref(py);
                let mut engine = engine.borrow_mut(py);
                let service = &mut *service;
                let feed = guard(|| {
                    let mut handler = service.service.handler(&mut engine.engine);
                    this.inner.feed(data, now, now_ms, &mut handler)
                })?;
                let held = service.service.held.len();
                queue_held(service, slf, token)?;
                (feed, held)
            }
        };
        let calls = feed.calls.into_iter().map(|call| call_to_py(py, call))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((this.output(py), PyList::new(py, calls)?, feed.cancelled, feed.close, held))
    }

    /// What answers delivered since the last call made (`RedisBatch.deliver`), and whether
    /// the connection is finished.
    #[pyo3(name = "output")]
    fn take_output<'py>(&mut self, py: Python<'py>) -> (Bound<'py, PyBytes>, bool) {
        (self.output(py), self.inner.is_closing())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(service) = &self.service {
            visit.call(service)?;
        }
        Ok(())
    }

    fn respond<'py>(&mut self, py: Python<'py>, answers: Vec<(u32, u8, Bound<'py, PyAny>)>, now: f64)
                    -> PyResult<(Bound<'py, PyBytes>, bool, Vec<String>)> {
        let mut problems = Vec::new();
        for (sid, kind, value) in answers {
            let answer = answer_from_py(kind, &value).unwrap_or_else(|err| {
                problems.push(format!("answer to stream {sid}: {err}"));
                Answer::error(Status::Internal, INTERNAL)
            });
            guard(|| self.inner.respond(sid, &answer, now))?;
        }
        Ok((self.output(py), self.inner.is_closing(), problems))
    }

    fn tick<'py>(&mut self, py: Python<'py>, now: f64, write_stalled: bool)
                 -> PyResult<(Bound<'py, PyBytes>, u8, Vec<u32>)> {
        let action = guard(|| self.inner.tick(now, write_stalled))?;
        Ok((self.output(py), action as u8, self.inner.take_cancelled()))
    }

    fn drain<'py>(&mut self, py: Python<'py>, now: f64) -> PyResult<(Bound<'py, PyBytes>, bool)> {
        guard(|| self.inner.drain(now))?;
        Ok((self.output(py), self.inner.is_closing()))
    }

    /// The peer sends nothing more: true to keep the transport open for the answers owed.
    fn eof(&mut self) -> bool {
        self.inner.eof()
    }

    fn abort(&mut self) {
        self.inner.abort();
    }

    /// End the connection with GOAWAY(code) (an error outside the protocol, e.g. a bug).
    fn fail<'py>(&mut self, py: Python<'py>, code: u32, message: &str) -> PyResult<Bound<'py, PyBytes>> {
        let code = error_code(code).ok_or_else(|| PyValueError::new_err(format!(
            "{code} is not an HTTP/2 error code")))?;
        guard(|| self.inner.fail(code, message))?;
        Ok(self.output(py))
    }

    #[getter]
    fn held_bytes(&self) -> usize {
        self.inner.held_bytes()
    }

    #[getter]
    fn open_streams(&self) -> usize {
        self.inner.open_streams()
    }

    #[getter]
    fn closing(&self) -> bool {
        self.inner.is_closing()
    }
}

impl H2Connection {
    fn output<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.take_output())
    }
}

/// Move the calls the service held during a feed into its queue, with their connection.
fn queue_held(service: &mut FastService, wire: &Bound<'_, H2Connection>,
              token: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    if service.service.held.is_empty() {
        return Ok(());
    }
    let Some(token) = token else {
        service.service.metrics.in_flight -= service.service.held.len() as i64;
        service.service.held.clear();
        return Err(PyValueError::new_err(
            "feed: a connection with a service that holds calls needs its token"));
    };
    for call in service.service.held.drain(..) {
        service.queue.push(Queued { token: token.clone().unbind(), wire: wire.clone().unbind(),
                                    call });
    }
    Ok(())
}

/// Run `work`, turning a panic (a bug) into RuntimeError: an ordinary exception the connection
/// answers with GOAWAY(INTERNAL_ERROR), where PyO3's PanicException would escape it.
fn guard<T>(work: impl FnOnce() -> T) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(work)).map_err(|_| {
        PyRuntimeError::new_err("the native HTTP/2 wire failed (a bug: the panic is logged above)")
    })
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn call_to_py(py: Python<'_>, call: Call) -> PyResult<Bound<'_, PyAny>> {
    let Call { stream_id, payload, deadline } = call;
    let (kind, payload) = match payload {
        Payload::RateLimit(request) => (RATE_LIMIT, request_to_py(py, request)?),
        Payload::Health(service) => (HEALTH, service.into_pyobject(py)?.into_any()),
        Payload::Malformed { method, message } => {
            let kind = match method {
                Method::RateLimit => MALFORMED_RATE_LIMIT,
                Method::Health => MALFORMED_HEALTH,
            };
            (kind, message.into_pyobject(py)?.into_any())
        }
    };
    Ok((stream_id, kind, payload, deadline).into_pyobject(py)?.into_any())
}

fn request_to_py(py: Python<'_>, request: RateLimitRequest) -> PyResult<Bound<'_, PyAny>> {
    let descriptors: Descriptors<'_> = PyTuple::new(py, request.descriptors.into_iter().map(|d| {
        let entries = PyTuple::new(py, d.entries)?;
        let limit = d.limit.map(|l| (l.requests_per_unit, l.unit));
        (entries, d.hits_addend, limit).into_pyobject(py)
    }).collect::<PyResult<Vec<_>>>()?)?;
    Ok((request.domain, descriptors, request.hits_addend).into_pyobject(py)?.into_any())
}

fn answer_from_py(kind: u8, value: &Bound<'_, PyAny>) -> PyResult<Answer> {
    match kind {
        RATE_LIMIT => Ok(Answer::RateLimit(response_from_py(value.extract()?)?)),
        HEALTH => match value.extract::<u8>()? {
            0 => Ok(Answer::Health(ServingStatus::Unknown)),
            1 => Ok(Answer::Health(ServingStatus::Serving)),
            2 => Ok(Answer::Health(ServingStatus::NotServing)),
            3 => Ok(Answer::Health(ServingStatus::ServiceUnknown)),
            n => Err(PyValueError::new_err(format!("{n} is not a health status"))),
        },
        ERROR => {
            let (code, message): (u64, String) = value.extract()?;
            let status = Status::from_code(code).filter(|s| *s != Status::Ok).ok_or_else(|| {
                PyValueError::new_err(format!("{code} is not a gRPC error status"))
            })?;
            Ok(Answer::error(status, message))
        }
        _ => Err(PyValueError::new_err(format!("{kind} is not an answer kind"))),
    }
}

fn response_from_py((overall, statuses, headers): RawResponse) -> PyResult<RateLimitResponse> {
    let statuses = statuses.into_iter().map(|(code, limit, remaining, reset_ms)| {
        let current_limit = limit.map(|(name, requests_per_unit, unit)| -> PyResult<_> {
            let unit = Unit::from_wire(u64::from(unit)).ok_or_else(|| {
                PyValueError::new_err(format!("{unit} is not a rate limit unit"))
            })?;
            Ok(CurrentLimit { name, requests_per_unit, unit })
        }).transpose()?;
        Ok(DescriptorStatus { code: code_from_py(code)?, current_limit, limit_remaining: remaining,
                              reset_ms })
    }).collect::<PyResult<Vec<_>>>()?;
    Ok(RateLimitResponse { overall_code: code_from_py(overall)?, statuses,
                           response_headers_to_add: headers })
}

fn code_from_py(code: u8) -> PyResult<Code> {
    match code {
        0 => Ok(Code::Unknown),
        1 => Ok(Code::Ok),
        2 => Ok(Code::OverLimit),
        n => Err(PyValueError::new_err(format!("{n} is not a rate limit code"))),
    }
}

fn error_code(code: u32) -> Option<ErrorCode> {
    use ErrorCode::*;
    [NoError, ProtocolError, InternalError, FlowControlError, SettingsTimeout, StreamClosed,
     FrameSizeError, RefusedStream, Cancel, CompressionError, ConnectError, EnhanceYourCalm,
     InadequateSecurity, Http11Required].get(code as usize).copied()
}
