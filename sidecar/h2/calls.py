"""Complete requests become method calls, and their outcomes answers.

Calls start with as little machinery as their completion allows. With the memory store a call
never really suspends, and a Task per call (creation, scheduling, a loop iteration, a done
callback) costs about as much as the whole HTTP/2 exchange. So calls start eagerly: on Python
3.12+ in a real Task created with eager_start=True (it runs to its first suspension inside the
constructor), on 3.11 -- when the server is told it is safe -- by driving the coroutine's first
step directly and creating a Task only if it suspends.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import types
from collections.abc import Callable, Coroutine, Generator
from functools import partial
from typing import Any, TypeVar

from sidecar.h2.errors import ErrorCode, StreamError
from sidecar.h2.grpc_wire import MESSAGE_PREFIX, GrpcError, Status, unframe
from sidecar.h2.options import H2Options
from sidecar.h2.request import Handler
from sidecar.h2.sending import Sender
from sidecar.h2.stream import Stream

log = logging.getLogger("sidecar.h2")

Outcome = bytes | GrpcError  # the response message, or the status the call ended with
_INTERNAL = "internal error; see the sidecar log"
T = TypeVar("T")  # what a method returns: message bytes here, decoded answers for the native wire


class CallRunner:
    """Answers each complete request of one connection: calls its method (or sends the
    answer its head decided), then turns the outcome into frames through the Sender."""

    def __init__(self, sender: Sender, loop: asyncio.AbstractEventLoop, options: H2Options,
                 flush_soon: Callable[[], None]) -> None:
        self._sender = sender
        self._loop = loop
        self._eager = options.eager_start
        self._max_message = options.max_message_size
        self._max_body = options.max_message_size + MESSAGE_PREFIX.size
        self._flush_soon = flush_soon  # for answers written outside data_received

    def complete(self, stream: Stream, body: bytes) -> None:
        """The whole request is in; StreamError when it contradicts its content-length."""
        head = stream.head
        if head.content_length is not None and head.content_length != stream.received:
            raise StreamError(stream.id, ErrorCode.PROTOCOL_ERROR, "content-length mismatch")
        handler = head.handler
        if handler is None:
            if head.reject_body:
                self._sender.send(stream, head.reject, head.reject_body, None)
            else:
                self._sender.headers_only(stream, head.reject)
            return
        size = len(body)
        if 5 < size <= self._max_body and body[0] == 0 and \
                int.from_bytes(body[1:5], "big") == size - 5:
            message = body[5:]  # the usual body: exactly one uncompressed message
        else:
            try:
                message = unframe(body, self._max_message)
            except GrpcError as exc:
                self._sender.error(stream, exc.code, exc.message)
                return
        if stream.deadline is not None and self._loop.time() >= stream.deadline:
            self._sender.error(stream, Status.DEADLINE_EXCEEDED, "deadline exceeded")
            return
        self._call(stream, handler, message)

    def _call(self, stream: Stream, handler: Handler, message: bytes) -> None:
        started = start_call(self._loop, handler(message), self._eager)
        if not isinstance(started, asyncio.Task):
            self._answer(stream, started)
            return
        stream.task = started
        started.add_done_callback(partial(self._task_done, stream))
        if stream.deadline is not None:
            stream.timer = self._loop.call_at(stream.deadline, self._deadline, stream)

    def _task_done(self, stream: Stream, task: asyncio.Task[bytes]) -> None:
        if stream.task is not task:  # the stream was reset or timed out meanwhile
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not report it as lost
            return
        stream.task = None
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None
        self._answer(stream, outcome(task))
        self._flush_soon()

    def _answer(self, stream: Stream, result: Outcome) -> None:
        if isinstance(result, GrpcError):
            self._sender.error(stream, result.code, result.message)
        else:
            self._sender.respond(stream, result)

    def _deadline(self, stream: Stream) -> None:
        stream.timer = None
        task, stream.task = stream.task, None
        if task is None:  # answered already
            return
        task.cancel()
        self._sender.error(stream, Status.DEADLINE_EXCEEDED, "deadline exceeded")
        self._flush_soon()


def start_call(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T],
               eager_311: bool) -> asyncio.Task[T] | T | GrpcError:
    """Run ``coro`` as far as it goes now: its outcome when it finished, else its Task."""
    if sys.version_info >= (3, 12):
        task = asyncio.Task(coro, loop=loop, eager_start=True)
        return outcome(task) if task.done() else task
    if not eager_311:
        return loop.create_task(coro)
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except GrpcError as exc:
        return exc
    except Exception:
        log.exception("unexpected error in a gRPC method")
        return GrpcError(Status.INTERNAL, _INTERNAL)
    return loop.create_task(_resume(coro, yielded))


def outcome(task: asyncio.Task[T]) -> T | GrpcError:
    """What a finished call's Task amounts to."""
    if task.cancelled():
        return GrpcError(Status.CANCELLED, "call cancelled")
    exc = task.exception()
    if exc is None:
        return task.result()
    if isinstance(exc, GrpcError):
        return exc
    log.error("unexpected error in a gRPC method", exc_info=exc)
    return GrpcError(Status.INTERNAL, _INTERNAL)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    """Continue, inside a Task, a coroutine whose first step already ran outside one: pass
    what it waits on up to the Task and what the Task sends (or throws) back down."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # CancelledError included: hand it down
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
