"""One HTTP/2 stream of a unary call, as the connection tracks it."""

from __future__ import annotations

import asyncio

from sidecar.h2.request import RequestHead


class Stream:
    """State of a stream from its HEADERS until both sides have ended it.

    ``body`` is only allocated when a request spans several DATA frames; the common request
    (one DATA frame with END_STREAM) is handed to its method without being copied here.
    ``pending`` and ``tail`` hold what the peer's flow-control windows do not let us send yet
    (``tail`` None: the last DATA frame ends the stream).
    """

    __slots__ = ("body", "deadline", "head", "id", "pending", "received", "recv_window",
                 "remote_closed", "send_window", "since", "tail", "task", "timer")

    def __init__(self, stream_id: int, head: RequestHead, recv_window: int, send_window: int,
                 now: float) -> None:
        self.id = stream_id
        self.head = head
        self.recv_window = recv_window
        self.send_window = send_window
        self.since = now  # when the request began, then when the response got blocked
        self.deadline = now + head.timeout if head.timeout is not None else None
        self.received = 0
        self.remote_closed = False
        self.body: bytearray | None = None
        self.pending: bytearray | None = None
        self.tail: bytes | None = None  # trailers block to send once ``pending`` is out
        self.task: asyncio.Task[bytes] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        """Stop work for a stream that is gone: its method call and its deadline timer."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            self.task.cancel()
            self.task = None
