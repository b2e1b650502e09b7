//! Values across the boundary: request descriptors in, decisions and errors out.
//!
//! A decision crosses as `(overall, statuses, headers)`: `statuses` one flat tuple of
//! [`STATUS_FIELDS`] integers per descriptor — code, limit id (−1 none, −2 a limit Envoy sent
//! with the request), requests_per_unit, unit, remaining, reset seconds, reset ms (−1 when not
//! known) — so no Python object is made per descriptor; the rules' own limits are found again
//! by id on the Python side.

use std::sync::Arc;

use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use crate::engine::{Decision, EngineError};
use crate::rls::{Descriptor, LimitOverride};
use crate::rules::{LimitSpec, RateLimit};

create_exception!(
    _native,
    RequestError,
    PyValueError,
    "The request is malformed; the message names the field."
);
create_exception!(
    _native,
    NoRulesError,
    PyRuntimeError,
    "No rules have been loaded yet."
);
create_exception!(
    _native,
    StorageError,
    PyRuntimeError,
    "The counter store failed: args are (message, transient)."
);

pub const STATUS_FIELDS: usize = 7;
const NO_LIMIT: i64 = -1;
const OVERRIDE_LIMIT: i64 = -2;

pub fn error_to_py(error: EngineError) -> PyErr {
    match error {
        EngineError::Request(m) => RequestError::new_err(m),
        EngineError::NoRules => NoRulesError::new_err("no rate limit configuration loaded"),
        EngineError::Storage { message, transient } => StorageError::new_err((message, transient)),
    }
}

/// The error as the exception instance itself (for the per-request results of a batch).
pub fn error_value(py: Python<'_>, error: EngineError) -> Py<PyAny> {
    error_to_py(error).into_value(py).into_any()
}

/// The message of `error` without its type name, to prefix with where it happened.
pub fn message(py: Python<'_>, error: &PyErr) -> String {
    error.value(py).to_string()
}

/// Descriptors and, per descriptor, the limit the caller computed itself (if any).
pub type Descriptors = (Vec<Descriptor>, Vec<Option<Arc<RateLimit>>>);

/// A sequence of descriptors: `(entries, hits_addend | None, limit | None)` tuples, or objects
/// with those three attributes (`sidecar.model.Descriptor`). `limit` is a `RateLimit` (any
/// object with its attributes: applied as it is), or Envoy's override as
/// `(requests_per_unit, unit)`.
pub fn descriptors(obj: &Bound<'_, PyAny>) -> PyResult<Descriptors> {
    let (mut out, mut explicit) = (Vec::new(), Vec::new());
    let mut any_explicit = false;
    for (i, item) in obj.try_iter()?.enumerate() {
        let item = item?;
        let (desc, limit) = descriptor(&item).map_err(|e| {
            RequestError::new_err(format!("descriptors[{i}]: {}", message(obj.py(), &e)))
        })?;
        any_explicit |= limit.is_some();
        out.push(desc);
        explicit.push(limit);
    }
    if !any_explicit {
        explicit.clear();
    }
    Ok((out, explicit))
}

fn descriptor(item: &Bound<'_, PyAny>) -> PyResult<(Descriptor, Option<Arc<RateLimit>>)> {
    let (entries, hits, limit) = match item.cast::<PyTuple>() {
        Ok(t) if t.len() == 3 => (t.get_item(0)?, t.get_item(1)?, t.get_item(2)?),
        Ok(t) => {
            return Err(PyValueError::new_err(format!(
                "a descriptor tuple has 3 fields, not {}",
                t.len()
            )))
        }
        Err(_) => (
            item.getattr(intern!(item.py(), "entries"))?,
            item.getattr(intern!(item.py(), "hits_addend"))?,
            item.getattr(intern!(item.py(), "limit"))?,
        ),
    };
    let hits_addend = if hits.is_none() {
        None
    } else {
        Some(hits.extract::<u64>()?)
    };
    let (envoy, explicit) = if limit.is_none() {
        (None, None)
    } else if let Ok(pair) = limit.cast::<PyTuple>() {
        let (requests_per_unit, unit): (u32, i32) = pair.extract()?;
        (
            Some(LimitOverride {
                requests_per_unit,
                unit,
            }),
            None,
        )
    } else {
        (None, Some(Arc::new(rate_limit(&limit)?)))
    };
    let desc = Descriptor {
        entries: entries_of(&entries)?,
        limit: envoy,
        hits_addend,
    };
    Ok((desc, explicit))
}

/// A `sidecar.model.RateLimit` (read by attribute) as the engine's.
fn rate_limit(obj: &Bound<'_, PyAny>) -> PyResult<RateLimit> {
    let get = |name: &str| obj.getattr(name);
    let spec = LimitSpec {
        requests_per_unit: get("requests_per_unit")?.extract()?,
        unit: get("unit")?.extract()?,
        stats_key: get("stats_key")?.extract()?,
        name: get("name")?.extract()?,
        unlimited: get("unlimited")?.extract()?,
        shadow_mode: get("shadow_mode")?.extract()?,
        quota_mode: get("quota_mode")?.extract()?,
        detailed_metric: get("detailed_metric")?.extract()?,
        replaces: get("replaces")?.extract()?,
        algorithm: get("algorithm")?.extract()?,
        window_ms: get("window_ms")?.extract()?,
        burst: get("burst")?.extract()?,
        count_rejected: get("count_rejected")?.extract()?,
        calendar: get("calendar")?.extract()?,
    };
    spec.compile(None)
        .map_err(|e| PyValueError::new_err(format!("limit: {e}")))
}

fn entries_of(entries: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in entries.try_iter()? {
        let entry = entry?;
        let pair = entry
            .cast::<PyTuple>()
            .map_err(|_| PyValueError::new_err("an entry is a (key, value) tuple"))?;
        if pair.len() != 2 {
            return Err(PyValueError::new_err("an entry is a (key, value) tuple"));
        }
        out.push((text(&pair.get_item(0)?)?, text(&pair.get_item(1)?)?));
    }
    Ok(out)
}

fn text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let s = obj
        .cast::<PyString>()
        .map_err(|_| PyValueError::new_err("entry keys and values are text"))?;
    Ok(s.to_str()?.to_owned())
}

pub fn decision<'py>(py: Python<'py>, d: &Decision) -> PyResult<Bound<'py, PyTuple>> {
    let mut flat: Vec<i64> = Vec::with_capacity(d.statuses.len() * STATUS_FIELDS);
    for s in &d.statuses {
        let (id, rpu, unit) = match &s.limit {
            None => (NO_LIMIT, 0, 0),
            Some(l) => (
                l.id.map_or(OVERRIDE_LIMIT, i64::from),
                i64::from(l.requests_per_unit),
                l.unit as i64,
            ),
        };
        flat.extend([
            s.code as i64,
            id,
            rpu,
            unit,
            s.remaining,
            s.reset_seconds,
            s.reset_ms.unwrap_or(-1),
        ]);
    }
    let statuses = PyTuple::new(py, flat)?;
    let headers = PyTuple::new(py, d.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    PyTuple::new(
        py,
        [
            (d.overall as i64).into_pyobject(py)?.into_any(),
            statuses.into_any(),
            headers.into_any(),
        ],
    )
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RequestError", py.get_type::<RequestError>())?;
    m.add("NoRulesError", py.get_type::<NoRulesError>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("STATUS_FIELDS", STATUS_FIELDS)?;
    Ok(())
}
