"""A real webhook receiver on loopback, and the Standard Webhooks verification a receiver runs,
written here from the specification (nothing of the sidecar is imported), so the tests check
the sidecar's signatures against an independent implementation."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.ports import free_port

TOLERANCE_SECONDS = 300  # what the specification suggests receivers accept


class InvalidSignature(Exception):
    pass


def verify(secret: str, headers: dict[str, str], body: bytes, now: float) -> dict[str, Any]:
    """The event, if ``headers`` sign ``body`` with ``secret`` (``whsec_`` + base64 key):
    v1,base64(HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")), one of the
    space-separated signatures, with a timestamp within TOLERANCE_SECONDS of ``now``."""
    event_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise InvalidSignature(f"timestamp {timestamp} is too far from {now:.0f}")
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256)
    expected = base64.b64encode(mac.digest()).decode()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return dict(json.loads(body))
    raise InvalidSignature("no v1 signature matches")


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float
    answered: int

    @property
    def event_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Receiver:
    """An HTTP server recording every POST; it answers ``fail_status`` to the next
    ``failures`` requests, then 200 (or 204)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[Received] = []
        self.failures = 0
        self.fail_status = 500
        self.delay = 0.0  # seconds before answering
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    status = receiver.fail_status if receiver.failures > 0 else 200
                    receiver.failures = max(0, receiver.failures - 1)
                    receiver.received.append(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                        time.time(), status))
                    delay = receiver.delay
                time.sleep(delay)  # (recorded on arrival: "received" means "under way")
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_one_request(self) -> None:
                # (the sender may have given up on a slow answer)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle_one_request()

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fail_next(self, count: int, status: int = 500) -> None:
        with self.lock:
            self.failures, self.fail_status = count, status

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def acknowledged(self, event_type: str | None = None) -> list[Received]:
        """Deliveries answered 2xx (of ``event_type``)."""
        return [r for r in self.snapshot() if 200 <= r.answered < 300
                and (event_type is None or r.event["type"] == event_type)]

    def verify_all(self, secret: str) -> list[dict[str, Any]]:
        """Every request received, verified (InvalidSignature on the first that is not)."""
        return [verify(secret, r.headers, r.body, r.at) for r in self.snapshot()]
