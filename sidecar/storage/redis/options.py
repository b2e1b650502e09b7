"""How to reach one Redis deployment: RedisOptions and the reference's address forms.

Built by the composition root from the REDIS_* settings; pure parsing, no redis-py, so a bad
address is a SettingsError naming the variable before anything connects.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from sidecar.errors import SettingsError

TYPES = ("single", "sentinel", "cluster")


@dataclass(frozen=True)
class RedisOptions:
    """How to reach one Redis deployment; built by settings from REDIS_* variables or flags."""

    url: str
    type: str = "single"  # single | sentinel | cluster (REDIS_TYPE)
    socket_type: str = "tcp"  # tcp | unix, for the reference's bare host:port / path form
    auth: str = ""  # "password" or "user:password" (ACL)
    sentinel_auth: str = ""  # for the sentinels themselves, same forms
    tls: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_skip_verify: bool = False
    pool_size: int = 10  # connections (per node in a Cluster)
    timeout: float = 0.015  # seconds: connect, and each round trip end to end
    db: int = 0
    pipeline_window: float = 0.0  # batching: 0 coalesces per event-loop turn
    pipeline_limit: int = 0  # batching: commands per pipeline at most; 0 no cap
    batching: bool = True
    breaker_failures: int = 5
    breaker_cooldown: float = 1.0

    @property
    def label(self) -> str:
        """A name for logs and metrics, without secrets."""
        return self.url.split(",", 1)[0] if self.type == "sentinel" else self.url


def redis_url(opts: RedisOptions) -> str:
    """``opts.url`` as a redis://, rediss:// or unix:// URL; SettingsError when it is none.

    Accepts the reference's bare forms too: ``host:port`` and a unix socket path.
    """
    url = opts.url.strip()
    if not url:
        raise SettingsError("REDIS_URL is empty; expected host:port, a unix socket path, or a "
                            "redis://, rediss:// or unix:// URL")
    if "://" in url:
        if opts.tls and url.startswith("redis://"):
            return "rediss://" + url[len("redis://"):]
        return url
    if opts.socket_type == "unix" or url.startswith("/"):
        return f"unix://{quote(url)}?db={opts.db}"
    host, port = _host_port(url, "REDIS_URL")
    host = f"[{host}]" if ":" in host else host  # IPv6
    return f"{'rediss' if opts.tls else 'redis'}://{host}:{port}/{opts.db}"


def _host_port(text: str, setting: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SettingsError(f"{setting} {text!r} is not host:port; expected e.g. "
                            "localhost:6379")
    return host.strip("[]"), int(port)


def sentinel_address(opts: RedisOptions) -> tuple[str, list[tuple[str, int]]]:
    """The reference's Sentinel REDIS_URL, ``mastername,host:port[,host:port…]``."""
    parts = [p.strip() for p in opts.url.split(",") if p.strip()]
    if len(parts) < 2 or ":" in parts[0]:
        raise SettingsError(f"REDIS_URL {opts.url!r} is not a Sentinel address; expected "
                            "mastername,host:port[,host:port…] with REDIS_TYPE=sentinel")
    return parts[0], [_host_port(p, "REDIS_URL") for p in parts[1:]]


def cluster_nodes(opts: RedisOptions) -> list[tuple[str, int]]:
    """The reference's Cluster REDIS_URL: seed nodes ``host:port[,host:port…]``."""
    parts = [p.strip() for p in opts.url.split(",") if p.strip()]
    if not parts:
        raise SettingsError("REDIS_URL is empty; expected host:port[,host:port…] seed nodes "
                            "with REDIS_TYPE=cluster")
    return [_host_port(p, "REDIS_URL") for p in parts]
