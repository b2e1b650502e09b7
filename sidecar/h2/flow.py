"""Receive-side flow control of one connection (RFC 9113 6.9)."""

from __future__ import annotations

from sidecar.h2 import frames as fr
from sidecar.h2.errors import ErrorCode, H2ConnectionError


class ReceiveWindow:
    """How much the peer may still send, and the credit we give back.

    Credit goes back in WINDOW_UPDATEs of half a window, so a steady stream of small requests
    costs one WINDOW_UPDATE per half window rather than one per request. Request bytes held for
    incomplete streams are counted: past ``max_buffered`` their credit is withheld until bodies
    are consumed, so a connection never holds more than max_buffered + one window."""

    def __init__(self, out: bytearray, window: int, max_buffered: int) -> None:
        self.out = out
        self.window = max(fr.DEFAULT_WINDOW, window)
        self.buffered = 0  # request bytes held for incomplete streams
        self._threshold = max(1, self.window // 2)
        self._unacked = 0  # credit not yet returned
        self._withheld = 0  # credit held back while ``buffered`` is over the limit
        self._max_buffered = max_buffered

    def consume(self, size: int) -> None:
        """A flow-controlled frame of ``size`` bytes (padding included) arrived."""
        self.window -= size
        if self.window < 0:
            raise H2ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window exceeded")

    def credit(self, size: int) -> None:
        """``size`` bytes were consumed or discarded: the peer may send them again."""
        size += self._unacked
        if size >= self._threshold:
            self.window += size
            self.out += fr.window_update(0, size)
            size = 0
        self._unacked = size

    def keep(self, held: int, size: int) -> None:
        """``held`` bytes of a ``size``-byte frame are kept in a request body."""
        self.buffered += held
        if self.buffered > self._max_buffered:
            self._withheld += size
        else:
            self.credit(size)

    def release(self, held: int) -> None:
        """A body of ``held`` bytes was consumed or dropped."""
        self.buffered -= held
        if self._withheld and self.buffered <= self._max_buffered:
            withheld, self._withheld = self._withheld, 0
            self.credit(withheld)
