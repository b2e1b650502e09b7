//! `run_checks`: the algorithms alone, in the shapes of `sidecar/limiter/algorithms.py`
//! (states as the Python store's lists of numbers, `Check` and `Limit` tuples, `Verdict`
//! tuples back), so they can be held against their Python and Lua twins one call at a time.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::algorithms::{self, Algorithm, Check, Limit, State};

/// `run_checks(states, checks, now, atomic) -> (new_states, verdicts)`, as the Python function.
#[pyfunction]
fn run_checks<'py>(
    py: Python<'py>,
    states: &Bound<'py, PyList>,
    checks: &Bound<'py, PyList>,
    now: f64,
    atomic: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let checks: Vec<Check> = checks.iter().map(|c| check(&c)).collect::<PyResult<_>>()?;
    if states.len() != checks.len() {
        return Err(PyValueError::new_err("one state per check"));
    }
    let states: Vec<Option<State>> = states
        .iter()
        .zip(&checks)
        .map(|(s, c)| {
            if s.is_none() {
                Ok(None)
            } else {
                state(c.algorithm, s.extract()?).map(Some)
            }
        })
        .collect::<PyResult<_>>()?;
    let refs: Vec<Option<&State>> = states.iter().map(Option::as_ref).collect();
    let (new, verdicts) = algorithms::run_checks(&refs, &checks, now, atomic);
    let new = PyList::new(py, new.iter().map(|s| s.as_ref().map(numbers)))?;
    let verdicts = PyList::new(
        py,
        verdicts
            .iter()
            .map(|v| (v.allowed, v.remaining, v.reset_ms, v.used)),
    )?;
    PyTuple::new(py, [new.into_any(), verdicts.into_any()])
}

fn check(obj: &Bound<'_, PyAny>) -> PyResult<Check> {
    let (key, algorithm, limit, hits, ttl_ms, window_end_ms): (
        String,
        String,
        Bound<'_, PyAny>,
        u64,
        f64,
        f64,
    ) = obj.extract()?;
    let (lim, window_ms, burst, count_rejected, always): (u32, f64, u32, bool, bool) =
        limit.extract()?;
    let algorithm = Algorithm::from_name(&algorithm)
        .ok_or_else(|| PyValueError::new_err(format!("unknown algorithm '{algorithm}'")))?;
    let limit = Limit {
        limit: lim,
        window_ms,
        burst,
        count_rejected,
        always,
    };
    Ok(Check {
        key,
        algorithm,
        limit,
        hits,
        ttl_ms,
        window_end_ms,
    })
}

/// A Python state list as the algorithm's state.
fn state(algorithm: Algorithm, n: Vec<f64>) -> PyResult<State> {
    let short = || PyValueError::new_err(format!("a {} state is too short", algorithm.name()));
    Ok(match algorithm {
        Algorithm::FixedWindow => State::Count(*n.first().ok_or_else(short)? as i64),
        Algorithm::SlidingWindow => match n[..] {
            [start, cur, prev, ..] => State::Sliding { start, cur, prev },
            _ => return Err(short()),
        },
        Algorithm::SlidingLog => State::Log(n.chunks_exact(2).map(|p| (p[0], p[1])).collect()),
        Algorithm::TokenBucket => match n[..] {
            [tokens, last, ..] => State::Tokens { tokens, last },
            _ => return Err(short()),
        },
        Algorithm::LeakyBucket => State::Tat(*n.first().ok_or_else(short)?),
    })
}

/// The state as the Python store's list of numbers.
fn numbers(state: &State) -> Vec<f64> {
    match state {
        State::Count(n) => vec![*n as f64],
        State::Sliding { start, cur, prev } => vec![*start, *cur, *prev],
        State::Log(log) => log.iter().flat_map(|&(t, n)| [t, n]).collect(),
        State::Tokens { tokens, last } => vec![*tokens, *last],
        State::Tat(t) => vec![*t],
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_checks, m)?)
}
