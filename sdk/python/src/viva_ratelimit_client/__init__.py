"""Client of the Viva rate-limit sidecar: REST (``Client``, ``AsyncClient``), gRPC
(``GrpcClient``, ``AsyncGrpcClient`` in ``viva_ratelimit_client.grpc_client``, with the
``grpc`` extra) and middleware for ASGI, WSGI and Django (``.asgi``, ``.wsgi``, ``.django``).

    from viva_ratelimit_client import Client
    limiter = Client("http://127.0.0.1:8080")
    if not limiter.allow("user_123", "api_requests"):
        ...  # refuse
    with limiter.lease("user_123", "ws"):  # a slot of a concurrency limit, or LeaseRefused
        ...

Full mode's key verification: ``Client(url, root_key=...).verify_key(api_key)`` answers a
``KeyVerification`` whose ``code`` is a ``VerifyCode``.
"""

from viva_ratelimit_client._transport import RetryPolicy
from viva_ratelimit_client.client import AsyncClient, Client
from viva_ratelimit_client.errors import (
    InvalidRequest,
    LeaseRefused,
    RateLimitClientError,
    SidecarUnavailable,
    Unauthorized,
)
from viva_ratelimit_client.lease import AsyncLease, Lease, LeaseResult, ReleaseResult
from viva_ratelimit_client.result import CheckResult, Descriptor, FailureMode
from viva_ratelimit_client.verification import KeyVerification, VerifiedLimit, VerifyCode

__all__ = [
    "AsyncClient",
    "AsyncLease",
    "CheckResult",
    "Client",
    "Descriptor",
    "FailureMode",
    "InvalidRequest",
    "KeyVerification",
    "Lease",
    "LeaseRefused",
    "LeaseResult",
    "RateLimitClientError",
    "ReleaseResult",
    "RetryPolicy",
    "SidecarUnavailable",
    "Unauthorized",
    "VerifiedLimit",
    "VerifyCode",
]
__version__ = "0.1.0"
