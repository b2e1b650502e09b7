"""The fast HTTP/1.1 path's own tests run on asyncio's event loop and, where it is installed
(an optional extra the sidecar then runs on), on uvloop's: its transports differ (they are not
asyncio.Transport subclasses) and the fast path drives them directly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import pytest


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], Any]] = {"asyncio": asyncio.new_event_loop}
    with contextlib.suppress(ImportError):
        import uvloop

        factories["uvloop"] = uvloop.new_event_loop
    return factories
