"""Stand-ins for the Engine: slow ones (deadlines, draining, cancellation) and failing ones."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sidecar.model import Decision, Descriptor
from tests.h2.conftest import make_engine


class SlowEngine:
    """The real engine, after ``delay`` seconds; counts the calls that were cancelled."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.inner = make_engine()
        self.started = 0
        self.cancelled = 0

    async def should_rate_limit(self, domain: str, descriptors: Sequence[Descriptor],
                                hits_addend: int = 0, *, charge_always: bool = False
                                ) -> Decision:
        self.started += 1
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return await self.inner.should_rate_limit(domain, descriptors, hits_addend,
                                                  charge_always=charge_always)


class FailingEngine:
    """Raises ``error`` from every call (after one suspension when ``suspend``)."""

    def __init__(self, error: BaseException, suspend: bool = False) -> None:
        self.error = error
        self.suspend = suspend

    async def should_rate_limit(self, domain: str, descriptors: Sequence[Descriptor],
                                hits_addend: int = 0, *, charge_always: bool = False) -> Any:
        if self.suspend:
            await asyncio.sleep(0)
        raise self.error
