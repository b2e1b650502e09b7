//! `compile_rules`: the plain data Python's `sidecar/native_bridge.py` makes of its validated
//! `RuleSet`, turned into the engine's compiled rules (once per reload).

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::convert::message;
use crate::rules::{
    domain_options, DomainOptions, DomainSpec, LimitSpec, NodeSpec, RuleSet, RuleSetBuilder,
};

/// A rule set ready for `NativeEngine.set_rules`.
#[pyclass(frozen, name = "CompiledRules", module = "sidecar._native")]
pub struct CompiledRules {
    pub(crate) rules: Arc<RuleSet>,
}

#[pymethods]
impl CompiledRules {
    /// How many limits (rule ids run from 0 to this, in the order they were given).
    #[getter]
    fn limits(&self) -> usize {
        self.rules.limits.len()
    }

    #[getter]
    fn domains(&self) -> usize {
        self.rules.domains.len()
    }
}

type NodeTuple = (
    String,
    String,
    Option<u32>,
    Vec<(String, u32)>,
    Vec<(Vec<String>, u32)>,
    bool,
    bool,
);

/// `compile_rules(limits, nodes, domains)`:
///
/// - `limits`: `(requests_per_unit, unit, stats_key, name, unlimited, shadow_mode, quota_mode,
///   detailed_metric, replaces, algorithm, window_ms, burst, count_rejected, calendar)` each;
/// - `nodes`: `(key, value, limit index | None, [(child key, node index)], [(pattern parts,
///   node index)], value_to_metric, share_threshold)` each;
/// - `domains`: `(name, root node index, atomic, failure_policy | None, time_zone, TZif bytes |
///   None)` each.
///
/// Raises ValueError naming the item that cannot be compiled.
#[pyfunction]
fn compile_rules(
    limits: &Bound<'_, PyList>,
    nodes: &Bound<'_, PyList>,
    domains: &Bound<'_, PyList>,
) -> PyResult<CompiledRules> {
    let mut builder = RuleSetBuilder::new();
    for (i, item) in limits.iter().enumerate() {
        let spec = limit_spec(&item).map_err(|e| at(&format!("limits[{i}]"), &e))?;
        builder
            .add_limit(spec)
            .map_err(|e| PyValueError::new_err(e.0))?;
    }
    for (i, item) in nodes.iter().enumerate() {
        let t: NodeTuple = item.extract().map_err(|e| at(&format!("nodes[{i}]"), &e))?;
        let (key, value, limit, children, wildcards, value_to_metric, share_threshold) = t;
        builder.add_node(NodeSpec {
            key,
            value,
            limit,
            children,
            wildcards,
            value_to_metric,
            share_threshold,
        });
    }
    for (i, item) in domains.iter().enumerate() {
        let spec = domain_spec(&item).map_err(|e| at(&format!("domains[{i}]"), &e))?;
        builder.add_domain(spec);
    }
    let rules = builder.build().map_err(|e| PyValueError::new_err(e.0))?;
    Ok(CompiledRules {
        rules: Arc::new(rules),
    })
}

/// `error` as a ValueError that says which item it is about.
fn at(item: &str, error: &PyErr) -> PyErr {
    Python::attach(|py| PyValueError::new_err(format!("{item}: {}", message(py, error))))
}

fn limit_spec(item: &Bound<'_, PyAny>) -> PyResult<LimitSpec> {
    let t = item.cast::<PyTuple>()?;
    if t.len() != 14 {
        return Err(PyValueError::new_err(format!(
            "a limit has 14 fields, not {}",
            t.len()
        )));
    }
    let f = |i: usize| t.get_item(i);
    Ok(LimitSpec {
        requests_per_unit: f(0)?.extract()?,
        unit: f(1)?.extract()?,
        stats_key: f(2)?.extract()?,
        name: f(3)?.extract()?,
        unlimited: f(4)?.extract()?,
        shadow_mode: f(5)?.extract()?,
        quota_mode: f(6)?.extract()?,
        detailed_metric: f(7)?.extract()?,
        replaces: f(8)?.extract()?,
        algorithm: f(9)?.extract()?,
        window_ms: f(10)?.extract()?,
        burst: f(11)?.extract()?,
        count_rejected: f(12)?.extract()?,
        calendar: f(13)?.extract()?,
    })
}

fn domain_spec(item: &Bound<'_, PyAny>) -> PyResult<DomainSpec> {
    let t = item.cast::<PyTuple>()?;
    if t.len() != 6 {
        return Err(PyValueError::new_err(format!(
            "a domain has 6 fields, not {}",
            t.len()
        )));
    }
    let tzif = t.get_item(5)?;
    Ok(DomainSpec {
        name: t.get_item(0)?.extract()?,
        root: t.get_item(1)?.extract()?,
        atomic: t.get_item(2)?.extract()?,
        failure_policy: t.get_item(3)?.extract()?,
        time_zone: t.get_item(4)?.extract()?,
        tzif: if tzif.is_none() {
            None
        } else {
            Some(tzif.cast::<PyBytes>()?.as_bytes().to_vec())
        },
    })
}

/// The options of a domain its caller owns (`Engine.should_rate_limit(options=...)`: full
/// mode's key verification), for `NativeEngine.decide` and `redis_batch`.
#[pyclass(frozen, name = "DomainOptions", module = "sidecar._native")]
pub struct OwnedDomain {
    pub(crate) options: DomainOptions,
}

#[pymethods]
impl OwnedDomain {
    /// `failure_policy` None: the service's; `tzif` the time zone's TZif data (None: UTC
    /// needs none unless a limit aligns to the calendar).
    #[new]
    #[pyo3(signature = (*, atomic=false, failure_policy=None, time_zone="UTC", tzif=None))]
    fn new(
        atomic: bool,
        failure_policy: Option<&str>,
        time_zone: &str,
        tzif: Option<&[u8]>,
    ) -> PyResult<OwnedDomain> {
        let options = domain_options("domain options", atomic, failure_policy, time_zone, tzif)
            .map_err(|e| PyValueError::new_err(e.0))?;
        Ok(OwnedDomain { options })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CompiledRules>()?;
    m.add_class::<OwnedDomain>()?;
    m.add_function(wrap_pyfunction!(compile_rules, m)?)?;
    Ok(())
}
