"""Billing periods: calendar months in UTC, named ``YYYY-MM``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sidecar.management.errors import Invalid

_PERIOD = re.compile(r"(\d{4})-(\d{2})\Z")


@dataclass(frozen=True, slots=True, order=True)
class Period:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str, field: str = "period") -> Period:
        """``YYYY-MM`` (years 2000 to 9998); Invalid naming ``field`` otherwise."""
        match = _PERIOD.match(text)
        if match is None or not 2000 <= int(match[1]) <= 9998 or not 1 <= int(match[2]) <= 12:
            raise Invalid(f"{text[:20]!r} is not a billing period; expected YYYY-MM, a month "
                          "from 2000-01 to 9998-12", field)
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def of(cls, moment: datetime) -> Period:
        moment = moment.astimezone(UTC)
        return cls(moment.year, moment.month)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    def next(self) -> Period:
        return Period(self.year + self.month // 12, self.month % 12 + 1)

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"
