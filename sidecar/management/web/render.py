"""Jinja2 templates (package data under web/templates) rendered into protected responses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

from sidecar.management.web.security import protect


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sidecar.management.web", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    env.filters["when"] = when
    env.filters["number"] = number
    env.filters["duration"] = duration
    env.filters["wait"] = wait
    return env


def when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def number(value: int | float) -> str:
    return f"{value:,}"


def duration(seconds: int) -> str:
    """A window or a wait in the largest whole unit: 1 s, 5 min, 1 h, 30 d."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def wait(seconds: int) -> str:
    """A time to wait, to the two largest units: 45 s, 34 min 44 s, 26 d 1 h."""
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size or (size == 1 and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(p for p in parts if not p.startswith("0 ") or len(parts) == 1)


class Renderer:
    def __init__(self) -> None:
        self.env = environment()

    def page(self, template: str, status: int = 200, **context: Any) -> web.Response:
        html = self.env.get_template(template).render(**context)
        response = web.Response(text=html, status=status, content_type="text/html",
                                charset="utf-8")
        protect(response)
        return response
