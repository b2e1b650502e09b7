"""A raw HTTP/1.1 client for the byte-level tests: send exact bytes, read exact answers."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass

_DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")


@dataclass
class Exchange:
    """What came back on one connection: the answers' bytes, and whether the server closed."""

    raw: bytes
    answers: list[bytes]
    closed: bool

    @property
    def statuses(self) -> list[int]:
        return [int(a.split(b" ", 2)[1]) for a in self.answers]

    def without_dates(self) -> bytes:
        return _DATE.sub(b"\r\nDate: -\r\n", self.raw)


def split_answers(raw: bytes, heads: list[bool]) -> tuple[list[bytes], bytes]:
    """The complete answers at the start of ``raw`` (``heads``: which requests were HEAD, in
    order; an interim 100 Continue belongs to the answer after it), and what is left."""
    answers: list[bytes] = []
    pos = 0
    start = 0
    while True:
        end = raw.find(b"\r\n\r\n", pos)
        if end < 0:
            return answers, raw[start:]
        head = raw[pos:end]
        status = int(head.split(b" ", 2)[1])
        if status == 100:
            pos = end + 4
            continue
        match = re.search(rb"\r\nContent-Length: (\d+)", head)
        length = int(match.group(1)) if match else 0
        is_head = heads[len(answers)] if len(answers) < len(heads) else False
        stop = end + 4 + (0 if is_head else length)
        if len(raw) < stop:
            return answers, raw[start:]
        answers.append(raw[start:stop])
        pos = start = stop


def exchange(port: int, data: bytes | list[bytes], answers: int, heads: list[bool] | None = None,
             timeout: float = 5.0, pause: float = 0.0, linger: float = 0.1) -> Exchange:
    """Send ``data`` (a list: one send each, ``pause`` apart) and read until ``answers``
    answers came (then ``linger`` more, to see whether the server closes) or it closed."""
    parts = [data] if isinstance(data, bytes) else data
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for part in parts:
            sock.sendall(part)
            if pause:
                time.sleep(pause)
        raw, closed = b"", False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = len(split_answers(raw, heads or [])[0]) >= answers
            sock.settimeout(linger if done else max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if done:
                    break
                continue
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            raw += chunk
    return Exchange(raw, split_answers(raw, heads or [])[0], closed)


def request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
            version: str = "1.1") -> bytes:
    """One request's bytes: Host (on 1.1) and Content-Length (with a body) added."""
    lines = [f"{method} {path} HTTP/{version}"]
    fields = dict(headers or {})
    if version == "1.1":
        fields.setdefault("Host", "sidecar")
    if body:
        fields.setdefault("Content-Length", str(len(body)))
    lines += [f"{k}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
