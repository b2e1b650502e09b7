//! PyO3 glue: the `sidecar._native` extension module. The only code that knows Python.

use pyo3::prelude::*;

mod wire;

/// `sidecar._native`: imported by the sidecar when built; the pure-Python twin runs otherwise.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    wire::register(m)?;
    Ok(())
}
