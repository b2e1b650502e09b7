//! PyO3 glue: the `sidecar._native` extension module. Each submodule registers its own part.

mod algorithms;
mod convert;
mod engine;
mod rules;
mod service;
mod wire;

use pyo3::prelude::*;

/// `sidecar._native`: imported by the sidecar when built; the pure-Python twin runs otherwise.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    rules::register(m)?;
    engine::register(m)?;
    algorithms::register(m)?;
    wire::register(m)?;
    service::register(m)?;
    Ok(())
}
