"""envoy.service.ratelimit.v3.RateLimitService over grpc.aio: protobuf ⇄ the service."""

from __future__ import annotations

from typing import Any

import grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc

from sidecar.errors import RequestError
from sidecar.model import Decision
from sidecar.service import RateLimitService, ServiceError
from sidecar.transports.rls_proto import ResponseBuilder, descriptors_from_proto

_STATUSES = {code.value[0]: code for code in grpc.StatusCode}  # number -> grpc.StatusCode


class RateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]
    def __init__(self, service: RateLimitService) -> None:
        self.method = service.method("ShouldRateLimit", "grpcio")
        self.builder = ResponseBuilder()

    async def ShouldRateLimit(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            decision = await self._decide(request, context)
        except ServiceError as exc:
            # abort raises the exception that ends the call with this status
            await context.abort(_STATUSES[exc.failure.grpc_status], exc.failure.message)
            raise AssertionError("unreachable") from exc
        return self.builder.build(decision)

    async def _decide(self, request: Any, context: grpc.aio.ServicerContext) -> Decision:
        try:
            descriptors = descriptors_from_proto(request)
        except RequestError as exc:
            raise self.method.reject(exc) from None
        return await self.method.decide(request.domain, descriptors, request.hits_addend,
                                        metadata=context.invocation_metadata())
