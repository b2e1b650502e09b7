"""Start-up warnings about the environment, so a mistyped variable does not pass in silence.

- A variable with one of our prefixes (``VARIABLE_PREFIXES``) that no setting reads: named with
  the closest setting (``REDIS_ADRR`` → ``REDIS_ADDR``), or as an envoyproxy/ratelimit setting
  this service does not read.
- A setting given under its own name and an alias (``REDIS_URL`` and ``REDIS_ADDR``): which wins.

Only names are ever printed, never values (a Redis URL may carry a password).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import fields

from sidecar.settings import Settings
from sidecar.transports.rest.options import ENV_VARIABLES as REST_VARIABLES
from sidecar.workers import WORKER_ENV

# Ours (VIVA_), and those of the reference's names we read: the variables checked. Not GRPC_:
# the gRPC runtime reads its own (GRPC_VERBOSITY, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, …).
VARIABLE_PREFIXES = ("VIVA_", "REDIS_", "RUNTIME_", "DEBUG_", "LIMIT_", "LOG_")

# envoyproxy/ratelimit settings that this service does not read (checked whatever the prefix).
REFERENCE_ONLY = frozenset({
    "GRPC_UDS", "GRPC_MAX_CONNECTION_AGE", "GRPC_MAX_CONNECTION_AGE_GRACE",
    "GRPC_SERVER_USE_TLS", "GRPC_SERVER_TLS_CERT", "GRPC_SERVER_TLS_KEY",
    "GRPC_CLIENT_TLS_CACERT", "GRPC_CLIENT_TLS_SAN", "RUNTIME_WATCH_ROOT",
    "REDIS_POOL_ON_EMPTY_BEHAVIOR", "REDIS_POOL_ON_EMPTY_WAIT_DURATION",
    "REDIS_HEALTH_CHECK_ACTIVE_CONNECTION", "REDIS_CLUSTER_PIPELINE_PARALLELISM",
    "REDIS_STARTUP_INITIAL_INTERVAL", "REDIS_STARTUP_MAX_INTERVAL",
    "REDIS_STARTUP_MAX_ELAPSED_TIME", "REDIS_PERSECOND_CLUSTER_PIPELINE_PARALLELISM",
    "REDIS_PERSECOND_POOL_ON_EMPTY_BEHAVIOR",
})

# Set by Kubernetes for every Service of the namespace (and by Docker links): a Service named
# "redis" brings REDIS_SERVICE_HOST, REDIS_PORT=tcp://…, REDIS_PORT_6379_TCP_ADDR, …
_SERVICE_LINK = re.compile(r"[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|"
                           r"PORT_\d+_(TCP|UDP|SCTP)(_ADDR|_PORT|_PROTO)?)")
_LINK_ADDRESS = re.compile(r"(tcp|udp|sctp)://\S+")


def known_variables() -> frozenset[str]:
    """Every variable some setting reads, aliases included."""
    names = {WORKER_ENV, *REST_VARIABLES}
    for f in fields(Settings):
        if f.metadata["parse"] is not None:
            names.update((f.metadata["env"], *f.metadata.get("aliases", ())))
    return frozenset(names)


def environment_warnings(env: Mapping[str, str]) -> list[str]:
    """The warnings for this environment, in the order of its variables' names."""
    known = known_variables()
    unread = [name for name in sorted(env)
              if (name.startswith(VARIABLE_PREFIXES) or name in REFERENCE_ONLY)
              and name not in known and not _service_link(name, env[name])]
    return [*(_unread(name, known) for name in unread), *_shadowed(env)]


def _service_link(name: str, value: str) -> bool:
    if _SERVICE_LINK.fullmatch(name):
        return True
    return name.endswith("_PORT") and _LINK_ADDRESS.fullmatch(value) is not None


def _unread(name: str, known: frozenset[str]) -> str:
    if name in REFERENCE_ONLY:
        return f"`{name}` is a setting of envoyproxy/ratelimit that this service does not read"
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"`{name}` is not a setting; did you mean `{close[0]}`?"
    return f"`{name}` is not a setting; see the README's Settings for the variables read"


def _shadowed(env: Mapping[str, str]) -> Iterator[str]:
    for f in fields(Settings):
        own = f.metadata["env"]
        for alias in f.metadata.get("aliases", ()):
            if own in env and alias in env:
                yield f"`{own}` and `{alias}` are both set; `{own}` wins, `{alias}` is ignored"
