//! The HTTP/1.1 fast path's Python face: `Http1Config` (the settings), `Http1Connection` (one
//! connection: bytes in, work out), `Http1Call` and `Http1Referral` (one request each, with
//! the methods that write its answer).

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::http1::answer::{Families, LimitView, StatusView};
use crate::http1::check::BodyLimits;
use crate::http1::conn::{Conn, End, Event};
use crate::http1::forward::ForwardOptions;
use crate::http1::outbox::Outbox;
use crate::http1::response::{Framing, CONTINUE};
use crate::http1::routes::Routes;
use crate::http1::serve::{work, Call, CallKind, Config, Referral, Work};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Http1Config>()?;
    m.add_class::<Http1Connection>()?;
    m.add_class::<Http1Call>()?;
    m.add_class::<Http1Referral>()?;
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
}

#[pymethods]
impl Http1Connection {
    #[new]
    fn new(config: &Http1Config) -> Http1Connection {
        let config = config.config.clone();
        Http1Connection {
            conn: Conn::new(config.routes.clone()),
            config,
            outbox: Outbox::default(),
        }
    }

    /// Read `data`: `(ready, items, handoff, closed)`. `ready`: the answers that may be sent
    /// now (those made while reading, e.g. an interim `100 Continue`), in order. `items`: an
    /// `Http1Call` or `Http1Referral` per request left to Python, each holding its answer's
    /// place (`slot`, for `fill`). `handoff`: the bytes from the first request this path does
    /// not answer (the general path reads them and the rest of the connection), else None.
    /// `closed`: a request ended the connection.
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
        let items = PyList::empty(py);
        let mut failed: Option<PyErr> = None;
        let Http1Connection {
            config,
            conn,
            outbox,
        } = self;
        let end = conn.feed(data, &mut |event| {
            if failed.is_some() {
                return;
            }
            let item = match event {
                Event::Continue => {
                    outbox.ready(CONTINUE.to_vec());
                    return;
                }
                Event::Request(request) => match work(request, config) {
                    Work::Call(call) => {
                        let slot = outbox.wait();
                        Bound::new(
                            py,
                            Http1Call {
                                config: config.clone(),
                                call,
                                slot,
                            },
                        )
                        .map(Bound::into_any)
                    }
                    Work::Refer(referral) => {
                        let slot = outbox.wait();
                        Bound::new(
                            py,
                            Http1Referral {
                                config: config.clone(),
                                referral,
                                slot,
                            },
                        )
                        .map(Bound::into_any)
                    }
                },
            };
            if let Err(e) = item.and_then(|item| items.append(item)) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let (handoff, closed) = match end {
            End::Open => (None, false),
            End::Close => (None, true),
            End::Handoff(rest) => (Some(PyBytes::new(py, &rest)), false),
        };
        let ready = PyBytes::new(py, &self.outbox.take_ready());
        (ready, items, handoff, closed).into_pyobject(py)
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
        for entries in &self.call.descriptors {
            list.append(PyTuple::new(py, entries.iter().map(|(k, v)| (k, v)))?)?;
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
