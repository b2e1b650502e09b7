"""Which engine path runs: the native hot path (``sidecar._native``, built from ``native/``
when cargo is on the PATH at install time) or the pure-Python twin.

``load()`` returns the extension module when it is built and allowed, else None, and logs one
line saying which path runs. ``VIVA_NATIVE=0`` forces the Python path.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from types import ModuleType

from sidecar.envvars import parse_bool

log = logging.getLogger("sidecar.native")


def load(environ: Mapping[str, str] = os.environ) -> ModuleType | None:
    """The native extension, or None when it is not built or VIVA_NATIVE=0 turns it off."""
    if not parse_bool("VIVA_NATIVE", environ.get("VIVA_NATIVE", "1")):
        log.info("engine path: pure Python (VIVA_NATIVE=0)")
        return None
    try:
        module = importlib.import_module("sidecar._native")
    except ImportError as exc:
        log.info("engine path: pure Python (sidecar._native is not built: %s)", exc)
        return None
    log.info("engine path: native (sidecar._native %s)", module.__version__)
    return module
