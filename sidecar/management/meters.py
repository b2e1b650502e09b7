"""Meters: what usage is measured in. ``requests`` (allowed decisions, counted by the sidecar
itself) always exists; the others are declared beside the plans and reported through
``POST /v1/usage/events``:

    meters:
      tokens:       {aggregation: sum}           # the sum of the reported values
      storage_gb:   {aggregation: max}           # the largest reported value
      active_users: {aggregation: unique_count}  # how many distinct values were reported
      exports:      {aggregation: count}         # how many events were reported

Every aggregation is over one billing period (and over each bucket of ``GET /v1/usage``),
exactly: ``unique_count`` keeps every distinct value of the period, not an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

REQUESTS = "requests"


class Aggregation(StrEnum):
    COUNT = "count"
    SUM = "sum"
    MAX = "max"
    UNIQUE_COUNT = "unique_count"


@dataclass(frozen=True, slots=True)
class Meter:
    name: str
    aggregation: Aggregation

    @property
    def counted(self) -> bool:
        """Whether the sidecar counts it from its own decisions (``requests``)."""
        return self.name == REQUESTS


REQUESTS_METER = Meter(REQUESTS, Aggregation.COUNT)
