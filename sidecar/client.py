"""A one-shot gRPC client for ``viva-ratelimit check``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import grpc
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import json_format


def parse_descriptor(text: str) -> ratelimit_pb2.RateLimitDescriptor:
    desc = ratelimit_pb2.RateLimitDescriptor()
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not key or not sep:
            raise ValueError(f"descriptor {text!r}: {pair!r} is not key=value")
        desc.entries.add(key=key, value=value)
    return desc


def check_once(address: str, domain: str, descriptors: Sequence[str], hits: int) -> int:
    try:
        request = rls_pb2.RateLimitRequest(
            domain=domain, descriptors=[parse_descriptor(d) for d in descriptors],
            hits_addend=hits)
    except ValueError as exc:
        print(f"viva-ratelimit check: {exc}", file=sys.stderr)
        return 2
    with grpc.insecure_channel(address) as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        try:
            response = stub.ShouldRateLimit(request, timeout=5)
        except grpc.RpcError as exc:
            print(f"viva-ratelimit check: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(response))
    return 0 if response.overall_code == rls_pb2.RateLimitResponse.OK else 3
