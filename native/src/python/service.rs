//! `FastService`: the engine behind the native wire (`service.rs`), given to each
//! `H2Connection` of the fast transport. Calls it holds for Redis wait in its queue, with the
//! connection they came on, until `NativeEngine.redis_batch(..., service)` takes them.

use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use super::engine::NativeEngine;
use super::wire::H2Connection;
use crate::service::{CallMetrics, HeldCall, Service, ERROR_KINDS, LATENCY_BOUNDS};

/// A held call, its connection and the caller's token for that connection.
pub(crate) struct Queued {
    pub token: Py<PyAny>,
    pub wire: Py<H2Connection>,
    pub call: HeldCall,
}

#[pyclass(name = "FastService", module = "sidecar._native")]
pub struct FastService {
    pub(crate) engine: Py<NativeEngine>,
    pub(crate) service: Service,
    pub(crate) queue: Vec<Queued>,
    /// A clock for the engine (seconds since the epoch), as the Python engine's is injected;
    /// None: the system's wall clock.
    clock: Option<Py<PyAny>>,
}

impl FastService {
    /// Now, in milliseconds since the epoch, on the service's clock.
    pub(crate) fn now_ms(&self, py: Python<'_>) -> PyResult<u64> {
        match &self.clock {
            None => Ok(SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)),
            Some(clock) => {
                let seconds: f64 = clock.call0(py)?.extract(py)?;
                Ok((seconds * 1000.0) as u64)
            }
        }
    }
}

#[pymethods]
impl FastService {
    /// `redis`: hold rate-limit calls for Redis batches instead of deciding them on the
    /// engine's memory store; `services`: the names health checks are answered for here;
    /// `clock`: the engine's clock (seconds since the epoch; tests give a fake one).
    #[new]
    #[pyo3(signature = (engine, *, redis=false, services=vec![String::new()], clock=None))]
    fn new(engine: Py<NativeEngine>, redis: bool, services: Vec<String>,
           clock: Option<Py<PyAny>>) -> FastService {
        FastService { engine, service: Service::new(redis, services), queue: Vec::new(), clock }
    }

    /// What health checks answer: SERVING or NOT_SERVING.
    #[getter]
    fn get_serving(&self) -> bool {
        self.service.serving
    }

    #[setter]
    fn set_serving(&mut self, serving: bool) {
        self.service.serving = serving;
    }

    /// Calls waiting for a Redis batch.
    #[getter]
    fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The request metrics of the calls answered here since the last call, and start over:
    /// `(requests, errors, latency buckets, latency sum, in flight)`, `errors` per
    /// `ERROR_KINDS`, the buckets per `LATENCY_BOUNDS` (not cumulative) and one above them.
    fn take_metrics(&mut self) -> (u64, Vec<u64>, Vec<u64>, f64, i64) {
        let CallMetrics { requests, errors, buckets, latency_sum, in_flight } =
            self.service.metrics.take();
        (requests, errors.to_vec(), buckets.to_vec(), latency_sum, in_flight)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.engine)?;
        if let Some(clock) = &self.clock {
            visit.call(clock)?;
        }
        for queued in &self.queue {
            visit.call(&queued.token)?;
            visit.call(&queued.wire)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.queue.clear();
        self.clock = None;
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FastService>()?;
    m.add("ERROR_KINDS", ERROR_KINDS.to_vec())?;
    m.add("LATENCY_BOUNDS", LATENCY_BOUNDS.to_vec())?;
    Ok(())
}
