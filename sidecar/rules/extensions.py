"""The rules' extensions of a ``rate_limit`` (how it counts), checked together: algorithm,
burst, unit_multiplier or window, calendar, count_rejected; and the concurrency limit
(``algorithm: concurrency`` with ``max`` and ``lease_ttl``), which counts holders instead of
requests. Files in the reference's format set none of them and keep its behaviour."""

from __future__ import annotations

import re
from typing import Any

import yaml

from sidecar.model import CALENDAR_UNITS, UNIT_SECONDS, Algorithm, RateLimit, Unit
from sidecar.rules.checker import MAX_U32, NodeChecker
from sidecar.rules.yaml11 import describe, int_value, is_null

EXTENSION_KEYS = (
    "algorithm",
    "burst",
    "unit_multiplier",
    "window",
    "calendar",
    "count_rejected",
    "max",
    "lease_ttl",
)
CONCURRENCY_KEYS = ("max", "lease_ttl")
# Keys of a rate_limit that describe a rate: a concurrency limit has no use for them.
RATE_KEYS = (
    "requests_per_unit",
    "unit",
    "unit_multiplier",
    "window",
    "burst",
    "calendar",
    "count_rejected",
    "replaces",
)
CONCURRENCY_SHAPE = (
    "max: <holders at once> and lease_ttl: <duration>, e.g. "
    "{algorithm: concurrency, max: 5, lease_ttl: 60s}"
)
DURATION = "a duration of whole seconds such as 30s, 90s, 5m, 1h30m or 2d"
ALGORITHMS_TEXT = ", ".join(Algorithm)
BUCKETS = (Algorithm.TOKEN_BUCKET, Algorithm.LEAKY_BUCKET)
SLIDING_LOG_MAX = 10_000  # entries a sliding_log key may hold (one per allowed request)
# The algorithms that can count refused requests.
COUNTERS = (Algorithm.FIXED_WINDOW, Algorithm.SLIDING_WINDOW)
_WINDOW = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class ExtensionChecker(NodeChecker):
    """The extension keys of a rate_limit mapping; ``domain_count_rejected`` is the domain's
    default for count_rejected (None: the algorithm's own)."""

    domain_count_rejected: bool | None = None

    def extensions(
        self,
        f: dict[str, yaml.Node],
        path: str,
        unit: Unit | None,
        unlimited: bool,
        window: int | None,
    ) -> dict[str, Any] | None:
        """The algorithm and window extensions, checked together; None when invalid."""
        given = [k for k in EXTENSION_KEYS if k in f]
        if unlimited and given:
            self.fail(
                f[given[0]],
                f"{path}.{given[0]}",
                f"'{given[0]}' has no meaning on an unlimited limit",
                "either 'unlimited: true' alone, or a limit with its algorithm",
            )
            return None
        errors = len(self.errors)
        algorithm = self.algorithm(f, path)
        for key in CONCURRENCY_KEYS:
            if key in f:
                self.fail(
                    f[key],
                    f"{path}.{key}",
                    f"'{key}' has no meaning for {algorithm}, which limits a rate",
                    f"algorithm: concurrency with {CONCURRENCY_SHAPE}; or, for a rate, "
                    "requests_per_unit and unit only",
                )
        out: dict[str, Any] = {"algorithm": algorithm}
        out["burst"] = self.burst(f, path, algorithm)
        out["window_ms"] = self.window_length(f, path, unit, window)
        out["calendar"] = self.calendar(f, path, unit, algorithm)
        if algorithm == Algorithm.SLIDING_LOG:
            self.log_size(f.get("requests_per_unit"), path)
        counted = f.get("count_rejected")
        if not is_null(counted):
            out["count_rejected"] = self.boolean(counted, f"{path}.count_rejected")
            if algorithm not in COUNTERS and out["count_rejected"]:
                self.fail(
                    counted,
                    f"{path}.count_rejected",
                    f"{algorithm} never charges refused requests",
                    "count_rejected only with fixed_window or sliding_window",
                )
        else:
            out["count_rejected"] = self._default_count_rejected(algorithm)
        return out if len(self.errors) == errors else None

    def log_size(self, node: yaml.Node | None, path: str) -> None:
        """sliding_log keeps one entry per allowed request and reads them all on each check:
        its limit is capped so one hot key cannot cost unbounded memory and CPU."""
        text = node.value if isinstance(node, yaml.ScalarNode) else ""
        if text.isdigit() and int(text) > SLIDING_LOG_MAX:
            self.fail(
                node,
                f"{path}.requests_per_unit",
                f"{text} is too many for sliding_log, which keeps one entry per request",
                f"at most {SLIDING_LOG_MAX}, or algorithm: sliding_window for larger limits",
            )

    def _default_count_rejected(self, algorithm: Algorithm) -> bool:
        """The domain's default where it set one; else only fixed windows count refusals (the
        reference's behaviour)."""
        if algorithm not in COUNTERS:
            return False
        domain = self.domain_count_rejected
        return algorithm == Algorithm.FIXED_WINDOW if domain is None else domain

    def algorithm(self, f: dict[str, yaml.Node], path: str) -> Algorithm:
        text = self.string(f.get("algorithm"), f"{path}.algorithm") or Algorithm.FIXED_WINDOW
        if text not in tuple(Algorithm):
            self.fail(
                f.get("algorithm"),
                f"{path}.algorithm",
                f"unknown algorithm '{text}'",
                f"one of {ALGORITHMS_TEXT}",
            )
            return Algorithm.FIXED_WINDOW
        return Algorithm(text)

    def burst(self, f: dict[str, yaml.Node], path: str, algorithm: Algorithm) -> int:
        node = f.get("burst")
        if is_null(node):
            return 0
        if algorithm not in BUCKETS:
            self.fail(
                node,
                f"{path}.burst",
                f"burst has no meaning for {algorithm}",
                "burst only with algorithm token_bucket or leaky_bucket",
            )
            return 0
        number = int_value(node)
        if number is None or not 1 <= number <= MAX_U32:
            self.fail(
                node,
                f"{path}.burst",
                f"{describe(node)} is not a valid burst",
                f"a whole number from 1 to {MAX_U32}",
            )
            return 0
        return number

    def window(self, f: dict[str, yaml.Node], path: str) -> int | None:
        """``window: 90s`` → 90000 (ms); None when invalid (already reported)."""
        return self.duration(f["window"], f"{path}.window", "a window length")

    def duration(self, node: yaml.Node, path: str, what: str) -> int | None:
        """``90s``, ``5m``, ``1h30m``, ``2d`` → milliseconds; None when invalid (reported)."""
        text = self.string(node, path).strip()
        match = _WINDOW.match(text)
        seconds = 0
        if match and text:
            d, h, m, sec = (int(g) if g else 0 for g in match.groups())
            seconds = ((d * 24 + h) * 60 + m) * 60 + sec
        if seconds <= 0:
            self.fail(node, path, f"'{text}' is not {what}", DURATION)
            return None
        return seconds * 1000

    # -- concurrency -------------------------------------------------------------------------

    def concurrency(
        self, f: dict[str, yaml.Node], node: yaml.Node, path: str
    ) -> dict[str, Any] | None:
        """A concurrency limit's fields (``max`` holders, ``lease_ttl``), as RateLimit keeps
        them; None when invalid (every problem reported)."""
        errors = len(self.errors)
        for key in RATE_KEYS:
            if key in f:
                self.fail(
                    f[key],
                    f"{path}.{key}",
                    f"'{key}' has no meaning for algorithm concurrency, which counts holders "
                    "at once, not requests over time",
                    CONCURRENCY_SHAPE,
                )
        holders = self.holders(f, node, path)
        ttl = self.lease_ttl(f, node, path)
        if len(self.errors) != errors or holders is None or ttl is None:
            return None
        return {
            "algorithm": Algorithm.CONCURRENCY,
            "requests_per_unit": holders,
            "unit": unit_for(ttl),
            "window_ms": ttl,
            "count_rejected": False,
        }

    def concurrency_flags(
        self, limit: RateLimit | None, f: dict[str, yaml.Node], path: str
    ) -> None:
        """quota_mode lets a request through while another descriptor has room: for leases,
        which hold every descriptor's slot or none, that has no meaning."""
        if limit is not None and limit.algorithm == Algorithm.CONCURRENCY and limit.quota_mode:
            self.fail(
                f["quota_mode"],
                f"{path}.quota_mode",
                "quota_mode has no meaning for a concurrency limit",
                "no quota_mode on a descriptor whose rate_limit has algorithm: concurrency "
                "(shadow_mode and detailed_metric are fine)",
            )

    def holders(self, f: dict[str, yaml.Node], node: yaml.Node, path: str) -> int | None:
        value = f.get("max")
        number = int_value(value)
        if number is not None and 1 <= number <= MAX_U32:
            return number
        if value is None and self.misspelled(node, "max"):
            return None
        problem = "max is missing" if is_null(value) else f"{describe(value)} is not a valid max"
        self.fail(
            value if value is not None else node,
            f"{path}.max",
            problem,
            f"the most holders at once: a whole number from 1 to {MAX_U32}",
        )
        return None

    def lease_ttl(self, f: dict[str, yaml.Node], node: yaml.Node, path: str) -> int | None:
        value = f.get("lease_ttl")
        if not is_null(value):
            assert value is not None
            return self.duration(value, f"{path}.lease_ttl", "a lease time to live")
        if not self.misspelled(node, "lease_ttl"):
            self.fail(
                value if value is not None else node,
                f"{path}.lease_ttl",
                "lease_ttl is missing: how long a holder that stops renewing keeps its slot",
                DURATION,
            )
        return None

    def window_length(
        self, f: dict[str, yaml.Node], path: str, unit: Unit | None, window: int | None
    ) -> int:
        node = f.get("unit_multiplier")
        if is_null(node):
            return window or 0
        if window is not None:
            self.fail(
                node,
                f"{path}.unit_multiplier",
                "unit_multiplier and window both given",
                "one of them: 'unit_multiplier: 5' with a unit, or 'window: 5m'",
            )
            return 0
        number = int_value(node)
        if number is None or not 1 <= number <= 1_000_000:
            self.fail(
                node,
                f"{path}.unit_multiplier",
                f"{describe(node)} is not a valid multiplier",
                "a whole number from 1 to 1000000",
            )
            return 0
        return number * UNIT_SECONDS.get(unit or Unit.SECOND, 1) * 1000 if number > 1 else 0

    def calendar(
        self, f: dict[str, yaml.Node], path: str, unit: Unit | None, algorithm: Algorithm
    ) -> bool:
        node = f.get("calendar")
        if not self.boolean(node, f"{path}.calendar"):
            return False
        if algorithm != Algorithm.FIXED_WINDOW:
            self.fail(
                node,
                f"{path}.calendar",
                f"calendar windows need fixed_window, not {algorithm}",
                "calendar: true only with the fixed_window algorithm",
            )
        elif (
            unit is None
            or unit.name.lower() not in CALENDAR_UNITS
            or any(k in f for k in ("window", "unit_multiplier"))
        ):
            self.fail(
                node,
                f"{path}.calendar",
                "calendar windows are one day, week, month or year",
                f"unit one of {', '.join(CALENDAR_UNITS)}, without unit_multiplier or window",
            )
        return True


def unit_for(window_ms: int) -> Unit:
    """The largest unit a window is a whole number of: what current_limit reports for it."""
    for unit in (Unit.YEAR, Unit.MONTH, Unit.WEEK, Unit.DAY, Unit.HOUR, Unit.MINUTE):
        if window_ms % (UNIT_SECONDS[unit] * 1000) == 0:
            return unit
    return Unit.SECOND


def is_concurrency(f: dict[str, yaml.Node]) -> bool:
    """Whether a rate_limit mapping asks for ``algorithm: concurrency``."""
    node = f.get("algorithm")
    return isinstance(node, yaml.ScalarNode) and node.value == Algorithm.CONCURRENCY
