"""A raw HTTP/2 client for tests: sends exactly the frames a test writes (valid or not) and
reads back frames, decoding header blocks with the reference `hpack` library."""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import hpack
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2

from sidecar.h2 import frames as fr

RLS_PATH = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
HEALTH_PATH = "/grpc.health.v1.Health/Check"


def rls_request(domain: str = "test", *entries: tuple[str, str], hits: int = 0) -> bytes:
    descriptor = ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries])
    request = rls_pb2.RateLimitRequest(domain=domain, descriptors=[descriptor],
                                       hits_addend=hits)
    return bytes(request.SerializeToString())


def rls_many(count: int, key: str = "bulk") -> bytes:
    """A request with ``count`` one-entry descriptors: its response has ``count`` statuses."""
    request = rls_pb2.RateLimitRequest(domain="test")
    for i in range(count):
        request.descriptors.add().entries.add(key=key, value=str(i))
    return bytes(request.SerializeToString())


def grpc_body(message: bytes, flag: int = 0) -> bytes:
    return bytes((flag,)) + len(message).to_bytes(4, "big") + message


def request_headers(path: str = RLS_PATH, **extra: str) -> list[tuple[str, str]]:
    headers = [(":method", "POST"), (":scheme", "http"), (":path", path),
               (":authority", "localhost"), ("content-type", "application/grpc"),
               ("te", "trailers")]
    headers += [(k.replace("_", "-"), v) for k, v in extra.items()]
    return headers


@dataclass
class Frame:
    type: int
    flags: int
    stream: int
    payload: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Frame(type={self.type}, flags={self.flags:#x}, stream={self.stream}, " \
               f"{len(self.payload)} bytes: {self.payload[:40]!r})"

    @property
    def end_stream(self) -> bool:
        return self.type in (fr.DATA, fr.HEADERS) and bool(self.flags & fr.END_STREAM)

    @property
    def error_code(self) -> int:
        offset = 4 if self.type == fr.GOAWAY else 0
        return int.from_bytes(self.payload[offset:offset + 4], "big")

    @property
    def last_stream(self) -> int:
        return int.from_bytes(self.payload[:4], "big") & fr.STREAM_ID_MASK


@dataclass
class Response:
    stream: int
    frames: list[Frame]

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.frames[0].headers) if self.frames[0].type == fr.HEADERS else {}

    @property
    def trailers(self) -> dict[str, str]:
        last = self.frames[-1]
        return dict(last.headers) if last.type == fr.HEADERS else {}

    @property
    def data(self) -> bytes:
        return b"".join(f.payload for f in self.frames if f.type == fr.DATA)

    @property
    def message(self) -> bytes:
        data = self.data
        assert data[0] == 0 and int.from_bytes(data[1:5], "big") == len(data) - 5
        return data[5:]

    @property
    def grpc_status(self) -> int | None:
        value = self.trailers.get("grpc-status")
        return int(value) if value is not None else None

    @property
    def reset(self) -> int | None:
        last = self.frames[-1]
        return last.error_code if last.type == fr.RST_STREAM else None


class RawClient:
    """One connection. ``settings`` go in our preface SETTINGS; ``window`` (when not None) is
    added to the connection window right away, as clients usually do."""

    def __init__(self, port: int, settings: dict[int, int] | None = None,
                 window: int | None = 1 << 24, handshake: bool = True,
                 header_table_size: int = 4096) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = header_table_size
        self.buf = b""
        self.server_settings: dict[int, int] = {}
        self.closed = False
        self._block: list[Frame] = []
        self.backlog: list[Frame] = []  # stream frames read while waiting for another stream
        if handshake:
            out = fr.PREFACE + fr.settings(settings or {})
            if window:
                out += fr.window_update(0, window)
            self.send(out)

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def encode(self, headers: list[tuple[str, str]]) -> bytes:
        return bytes(self.encoder.encode(headers))

    def send_headers(self, sid: int, headers: list[tuple[str, str]], end_stream: bool = False
                     ) -> None:
        self.send(fr.headers(sid, self.encode(headers), end_stream, fr.DEFAULT_MAX_FRAME))

    def call(self, sid: int, message: bytes, path: str = RLS_PATH, **extra: str) -> None:
        """A whole unary request: HEADERS, then one DATA frame with END_STREAM."""
        self.send_headers(sid, request_headers(path, **extra))
        self.send(fr.data(sid, grpc_body(message), True))

    # -- reading -------------------------------------------------------------------------------

    def read_frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame, or None when the connection is closed (or nothing came in time)."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + length:
                    frame = Frame(self.buf[3], self.buf[4],
                                  int.from_bytes(self.buf[5:9], "big") & fr.STREAM_ID_MASK,
                                  self.buf[9:9 + length])
                    self.buf = self.buf[9 + length:]
                    self._decode(frame)
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                return None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                continue
            self.buf += chunk

    def _decode(self, frame: Frame) -> None:
        if frame.type == fr.SETTINGS and not frame.flags & fr.ACK:
            for i in range(0, len(frame.payload), 6):
                ident = int.from_bytes(frame.payload[i:i + 2], "big")
                self.server_settings[ident] = int.from_bytes(frame.payload[i + 2:i + 6], "big")
            with contextlib.suppress(OSError):  # the server may have closed already
                self.send(fr.SETTINGS_ACK)
        if frame.type in (fr.HEADERS, fr.CONTINUATION):
            self._block.append(frame)
            if frame.flags & fr.END_HEADERS:
                block = b"".join(f.payload for f in self._block)
                decoded: Any = self.decoder.decode(block, raw=False)
                self._block[0].headers = [(str(n), str(v)) for n, v in decoded]
                self._block = []

    def frames_until(self, done: Any, timeout: float = 5.0) -> list[Frame]:
        """Frames up to and including the first for which ``done(frame)`` is true."""
        out: list[Frame] = []
        deadline = time.monotonic() + timeout
        while True:
            frame = self.read_frame(max(0.0, deadline - time.monotonic()))
            if frame is None:
                raise AssertionError(f"no matching frame; got {out[-10:]}, closed={self.closed}")
            out.append(frame)
            if done(frame):
                return out

    def response(self, sid: int, timeout: float = 5.0) -> Response:
        """Every frame of stream ``sid`` until it ends (END_STREAM or RST_STREAM); frames of
        other streams read meanwhile are kept for their own ``response`` call."""
        def ends(f: Frame) -> bool:
            return f.stream == sid and (f.end_stream or f.type == fr.RST_STREAM)

        mine = [f for f in self.backlog if f.stream == sid]
        self.backlog = [f for f in self.backlog if f.stream != sid]
        if not any(ends(f) for f in mine):
            for frame in self.frames_until(ends, timeout):
                (mine if frame.stream == sid else self.backlog).append(frame)
        return Response(sid, [f for f in mine if f.type != fr.CONTINUATION])

    def goaway(self, timeout: float = 5.0) -> Frame:
        return self.frames_until(lambda f: f.type == fr.GOAWAY, timeout)[-1]

    def wait_closed(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.read_frame(deadline - time.monotonic())
        return self.closed
