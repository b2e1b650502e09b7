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


class Renderer:
    def __init__(self) -> None:
        self.env = environment()

    def page(self, template: str, status: int = 200, **context: Any) -> web.Response:
        html = self.env.get_template(template).render(**context)
        response = web.Response(text=html, status=status, content_type="text/html",
                                charset="utf-8")
        protect(response)
        return response
