"""An HTTP answer as plain data: status, fields in order, body.

The endpoints that both HTTP paths serve (the REST check endpoints, /json, full mode's key
endpoints) build a Reply once; aiohttp sends it as a web.Response and the fast HTTP/1.1 path
(http1.py) frames it itself, so both paths send the same fields in the same order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping
from yarl import URL

JSON = "application/json; charset=utf-8"  # what web.json_response and text= answers say
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]  # Content-Type first, as aiohttp writes a handler's fields
    body: bytes

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=self.body,
                            headers=CIMultiDict(self.headers))


def json_reply(value: Any, status: int = 200,
               headers: list[tuple[str, str]] | None = None) -> Reply:
    """``value`` as ``web.json_response`` writes it (``json.dumps``), then ``headers``."""
    return Reply(status, [("Content-Type", JSON), *(headers or ())], json.dumps(value).encode())


def text_reply(text: str, status: int = 200) -> Reply:
    return Reply(status, [("Content-Type", TEXT)], text.encode())


@dataclass(frozen=True, slots=True)
class RequestParts:
    """A request as the endpoints that both HTTP paths serve read it: fields (case-insensitive
    names, the first of each wins on ``get``), query, body and the peer's address."""

    method: str
    headers: CIMultiDictProxy[str]
    query: MultiMapping[str]
    body: bytes
    remote: str

    @classmethod
    def of(cls, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
           remote: str) -> RequestParts:
        """From the fast path's parts: ``target`` is the path and query as sent, parsed as
        aiohttp parses it."""
        _, _, query = target.partition("?")
        url = URL.build(query_string=query, encoded=True)
        return cls(method, CIMultiDictProxy(CIMultiDict(headers)), url.query, body, remote)

    @classmethod
    def of_request(cls, request: web.Request, body: bytes = b"") -> RequestParts:
        return cls(request.method, request.headers, request.query, body, request.remote or "")
