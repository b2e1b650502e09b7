"""One frozen Settings, built from command-line flags > environment > defaults.

Names shared with envoyproxy/ratelimit keep its environment variable names (REDIS_URL, PORT,
SHADOW_MODE, …); settings of our own are VIVA_*. Every knob is a field below, with its variable.
A bad value raises SettingsError naming the variable and what it accepts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from sidecar.envvars import parse_bool, parse_int
from sidecar.errors import SettingsError
from sidecar.model import FailurePolicy
from sidecar.transports.rest.options import RestOptions

T = TypeVar("T")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "critical")
REDIS_TYPES = ("single", "sentinel", "cluster")
MODES = ("standalone", "full")
_SECRETS = ("root_key", "secret_key", "secret_key_previous")
_LOG_LEVEL_ALIASES = {"trace": "debug", "fatal": "critical", "panic": "critical"}
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}


def parse_workers(name: str, text: str) -> int:
    return parse_int(name, text, 1, 256)


def parse_port(name: str, text: str) -> int:
    return parse_int(name, text, 0, 65535)


def parse_ratio(name: str, text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a number; expected e.g. 0.8") from None
    if not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name}={value} is out of range; expected 0..1")
    return value


def parse_duration(name: str, text: str) -> float:
    """Seconds from a Go-style duration ("10s", "50ms", "1m30s") or a bare number of seconds."""
    raw = text.strip()
    total, pos = 0.0, 0
    if _NUMBER.fullmatch(raw):
        total, pos = float(raw), len(raw)
    else:
        for m in _DURATION.finditer(raw):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
    if pos != len(raw) or not raw:
        raise SettingsError(f"{name}={text!r} is not a duration; expected e.g. 50ms, 2s, 1m")
    return total


def parse_timeout(name: str, text: str) -> float:
    """A duration that must be above zero (a zero timeout would fail every call)."""
    value = parse_duration(name, text)
    if value <= 0:
        raise SettingsError(f"{name}={text!r} must be above zero; expected e.g. 100ms, 2s")
    return value


def parse_log_level(name: str, text: str) -> str:
    """LOG_LEVEL, including logrus's names the reference accepts (trace, fatal, panic)."""
    low = text.strip().lower()
    low = _LOG_LEVEL_ALIASES.get(low, low)
    if low not in _LOG_LEVELS:
        raise SettingsError(f"{name}={text!r} is not a log level; expected one of "
                            f"{', '.join(_LOG_LEVELS)}")
    return low


def parse_choice(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(name: str, text: str) -> str:
        low = text.strip().lower()
        if low not in choices:
            raise SettingsError(f"{name}={text!r} is not supported; expected one of "
                                f"{', '.join(choices)}")
        return low

    return parse


def parse_failure_policy(name: str, text: str) -> FailurePolicy:
    return FailurePolicy(parse_choice(tuple(FailurePolicy))(name, text))


def _str(name: str, text: str) -> str:
    return text


def _setting(env: str, parse: Callable[[str, str], Any], default: Any, flag: str = "",
             aliases: tuple[str, ...] = ()) -> Any:
    """``aliases``: other variables read when ``env`` is not set (the seed's deployment names);
    sidecar/envcheck.py warns when both are set."""
    return field(default=default, metadata={"env": env, "parse": parse, "flag": flag,
                                            "aliases": aliases})


def parse_root_key(name: str, text: str) -> str:
    """A bootstrap root key: any string of at least 32 characters (never echoed back)."""
    if text and len(text) < 32:
        raise SettingsError(f"{name} is {len(text)} characters long; expected at least 32 "
                            "(e.g. the output of 'viva-ratelimit admin create-root-key')")
    return text


def parse_flush_interval(name: str, text: str) -> float:
    """How often usage counts are written to the ledger: 0.1 s to 1 h."""
    seconds = parse_duration(name, text)
    if not 0.1 <= seconds <= 3600:
        raise SettingsError(f"{name}={text!r} is out of range; expected a duration from 100ms "
                            "to 1h (what a crash may lose; default 10s)")
    return seconds


def parse_secret_key(name: str, text: str) -> str:
    """A key that seals webhook secrets: any string of at least 32 characters (never echoed)."""
    if text and len(text) < 32:
        raise SettingsError(f"{name} is {len(text)} characters long; expected at least 32 "
                            "(e.g. the output of 'openssl rand -base64 32')")
    return text


def parse_secret_keys(name: str, text: str) -> tuple[str, ...]:
    """Former VIVA_SECRET_KEY values, comma-separated (rotation)."""
    return tuple(parse_secret_key(name, k.strip()) for k in text.split(",") if k.strip())


def parse_concurrency(name: str, text: str) -> int:
    return parse_int(name, text, 1, 256)


def parse_public_url(name: str, text: str) -> str:
    """An origin browsers use: ``http(s)://host[:port]``, no path (the pages live at /)."""
    url = text.strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    if not url:
        return ""
    if scheme not in ("http", "https") or not sep or not rest or any(c in rest for c in "/?#@ "):
        raise SettingsError(f"{name}={text!r} is not an origin; expected "
                            "https://host[:port] with no path, e.g. https://api.example.com")
    return url


def parse_header_list(name: str, text: str) -> tuple[str, ...]:
    headers = tuple(h.strip().lower() for h in text.split(",") if h.strip())
    if not headers:
        raise SettingsError(f"{name}={text!r} names no header; expected e.g. "
                            "x-api-key,authorization")
    return headers


def _variable_of(meta: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """The variable a setting is read from: its own, else the first of its aliases that is set."""
    for name in (meta["env"], *meta.get("aliases", ())):
        if name in env:
            return str(name)
    return None


@dataclass(frozen=True)
class Settings:
    """Every knob of the sidecar. ``env`` names its variable; ``flag`` its serve option."""

    # standalone: the rate-limit service; full: plus API keys, plans, usage and the web pages.
    mode: str = _setting("VIVA_MODE", parse_choice(MODES), "standalone", "mode",
                         aliases=("MODE",))
    # Rules
    config_dir: str = _setting("VIVA_CONFIG_DIR", _str, "", "config")
    runtime_root: str = _setting("RUNTIME_ROOT", _str, "")
    runtime_subdirectory: str = _setting("RUNTIME_SUBDIRECTORY", _str, "")
    runtime_appdirectory: str = _setting("RUNTIME_APPDIRECTORY", _str, "config")
    ignore_dotfiles: bool = _setting("RUNTIME_IGNOREDOTFILES", parse_bool, True)
    merge_domain_config: bool = _setting("MERGE_DOMAIN_CONFIG", parse_bool, False)
    force_start_without_initial_config: bool = _setting(
        "FORCE_START_WITHOUT_INITIAL_CONFIG", parse_bool, False)
    reload_poll_interval: float = _setting("VIVA_RELOAD_POLL_INTERVAL", parse_duration, 5.0)
    # Servers
    host: str = _setting("HOST", _str, "0.0.0.0")
    port: int = _setting("PORT", parse_port, 8080, "http_port")
    grpc_host: str = _setting("GRPC_HOST", _str, "0.0.0.0")
    grpc_port: int = _setting("GRPC_PORT", parse_port, 8081, "grpc_port")
    debug_host: str = _setting("DEBUG_HOST", _str, "0.0.0.0")
    debug_port: int = _setting("DEBUG_PORT", parse_port, 6070, "debug_port")
    shutdown_grace: float = _setting("VIVA_SHUTDOWN_GRACE", parse_duration, 5.0)
    # The gRPC port's server: fast (our HTTP/2 transport) or grpcio (grpc.aio).
    transport: str = _setting("VIVA_TRANSPORT", parse_choice(("fast", "grpcio")), "fast",
                              "transport")
    # The Rust hot path (sidecar._native) when it is built: the fast transport's wire and the
    # engine; false forces the pure-Python path everywhere.
    native: bool = _setting("VIVA_NATIVE", parse_bool, True)
    # Worker processes sharing the ports (SO_REUSEPORT); more than one needs the Redis store.
    workers: int = _setting("VIVA_WORKERS", parse_workers, 1, "workers")
    # Between failing health and refusing new calls, so probes and load balancers move away.
    shutdown_delay: float = _setting("VIVA_SHUTDOWN_DELAY", parse_duration, 0.0)
    healthy_with_config: bool = _setting("HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED", parse_bool,
                                         False)
    log_level: str = _setting("LOG_LEVEL", parse_log_level, "warn", "log_level")
    log_format: str = _setting("LOG_FORMAT", parse_choice(("text", "json")), "text")
    # Store
    backend: str = _setting("BACKEND_TYPE", parse_choice(("memory", "redis")), "", "backend")
    redis_url: str = _setting("REDIS_URL", _str, "", "redis_url", aliases=("REDIS_ADDR",))
    redis_type: str = _setting("REDIS_TYPE", parse_choice(REDIS_TYPES), "single")
    redis_socket_type: str = _setting("REDIS_SOCKET_TYPE", parse_choice(("tcp", "unix")), "")
    redis_auth: str = _setting("REDIS_AUTH", _str, "")
    redis_sentinel_auth: str = _setting("REDIS_SENTINEL_AUTH", _str, "")
    redis_tls: bool = _setting("REDIS_TLS", parse_bool, False)
    redis_tls_cacert: str = _setting("REDIS_TLS_CACERT", _str, "")
    redis_tls_client_cert: str = _setting("REDIS_TLS_CLIENT_CERT", _str, "")
    redis_tls_client_key: str = _setting("REDIS_TLS_CLIENT_KEY", _str, "")
    redis_tls_skip_verify: bool = _setting("REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", parse_bool,
                                           False)
    redis_pool_size: int = _setting("REDIS_POOL_SIZE", parse_int, 10)
    # Well under Envoy's 20 ms default rate-limit timeout (the reference waits 10 s).
    redis_timeout: float = _setting("REDIS_TIMEOUT", parse_timeout, 0.015)
    redis_db: int = _setting("VIVA_REDIS_DB", parse_int, 0)
    # Cross-request batching: concurrent requests share pipelines (storage/batching.py).
    redis_batching: bool = _setting("VIVA_REDIS_BATCHING", parse_bool, True)
    redis_pipeline_window: float = _setting("REDIS_PIPELINE_WINDOW", parse_duration, 0.0)
    redis_pipeline_limit: int = _setting("REDIS_PIPELINE_LIMIT", parse_int, 0)
    # A second Redis for one-second windows (the reference's REDIS_PERSECOND_*).
    redis_persecond: bool = _setting("REDIS_PERSECOND", parse_bool, False)
    redis_persecond_url: str = _setting("REDIS_PERSECOND_URL", _str, "")
    redis_persecond_type: str = _setting("REDIS_PERSECOND_TYPE", parse_choice(REDIS_TYPES),
                                         "single")
    redis_persecond_socket_type: str = _setting("REDIS_PERSECOND_SOCKET_TYPE",
                                                parse_choice(("tcp", "unix")), "")
    redis_persecond_auth: str = _setting("REDIS_PERSECOND_AUTH", _str, "")
    redis_persecond_sentinel_auth: str = _setting("REDIS_PERSECOND_SENTINEL_AUTH", _str, "")
    redis_persecond_tls: bool = _setting("REDIS_PERSECOND_TLS", parse_bool, False)
    redis_persecond_pool_size: int = _setting("REDIS_PERSECOND_POOL_SIZE", parse_int, 10)
    redis_persecond_timeout: float = _setting("REDIS_PERSECOND_TIMEOUT", parse_timeout, 0.015)
    redis_persecond_pipeline_window: float = _setting("REDIS_PERSECOND_PIPELINE_WINDOW",
                                                      parse_duration, 0.0)
    redis_persecond_pipeline_limit: int = _setting("REDIS_PERSECOND_PIPELINE_LIMIT",
                                                   parse_int, 0)
    # Store failures: a breaker per Redis endpoint, then the failure policy.
    breaker_failures: int = _setting("VIVA_BREAKER_FAILURES", parse_int, 5)
    breaker_cooldown: float = _setting("VIVA_BREAKER_COOLDOWN", parse_duration, 1.0)
    failure_policy: FailurePolicy = _setting("VIVA_FAILURE_POLICY", parse_failure_policy,
                                             FailurePolicy.UNAVAILABLE)
    local_cache_size: int = _setting("LOCAL_CACHE_SIZE_IN_BYTES", parse_int, 0)
    # Engine
    cache_key_prefix: str = _setting("CACHE_KEY_PREFIX", _str, "")
    near_limit_ratio: float = _setting("NEAR_LIMIT_RATIO", parse_ratio, 0.8)
    shadow_mode: bool = _setting("SHADOW_MODE", parse_bool, False)
    quota_mode: bool = _setting("QUOTA_MODE", parse_bool, False)
    stop_increment_when_over_limit: bool = _setting(
        "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT", parse_bool, False)
    expiration_jitter_max_seconds: int = _setting("EXPIRATION_JITTER_MAX_SECONDS", parse_int,
                                                  300)
    response_headers: bool = _setting("LIMIT_RESPONSE_HEADERS_ENABLED", parse_bool, False)
    limit_header: str = _setting("LIMIT_LIMIT_HEADER", _str, "RateLimit-Limit")
    remaining_header: str = _setting("LIMIT_REMAINING_HEADER", _str, "RateLimit-Remaining")
    reset_header: str = _setting("LIMIT_RESET_HEADER", _str, "RateLimit-Reset")
    # Full mode: the catalog, the bootstrap root key, plans, key verification.
    data_dir: str = _setting("VIVA_DATA_DIR", _str, "./data")
    database_url: str = _setting("VIVA_DATABASE_URL", _str, "")
    root_key: str = _setting("VIVA_ROOT_KEY", parse_root_key, "")
    plans_path: str = _setting("VIVA_PLANS", _str, "")
    key_headers: tuple[str, ...] = _setting("VIVA_KEY_HEADERS", parse_header_list,
                                            ("x-api-key", "authorization"))
    key_cache_size: int = _setting("VIVA_KEY_CACHE_SIZE", parse_int, 100_000)
    verify_failures_per_minute: int = _setting("VIVA_VERIFY_FAILURES_PER_MINUTE", parse_int, 60)
    # Usage metering: decisions counted in memory, written to the ledger every interval.
    usage: bool = _setting("VIVA_USAGE", parse_bool, True)
    usage_flush_interval: float = _setting("VIVA_USAGE_FLUSH_INTERVAL", parse_flush_interval,
                                           10.0)
    # Full mode: alerts and signed webhooks (management/alerts/).
    secret_key: str = _setting("VIVA_SECRET_KEY", parse_secret_key, "")
    secret_key_previous: tuple[str, ...] = _setting("VIVA_SECRET_KEY_PREVIOUS",
                                                    parse_secret_keys, ())
    webhooks_allow_private: bool = _setting("VIVA_WEBHOOKS_ALLOW_PRIVATE", parse_bool, False)
    webhooks_timeout: float = _setting("VIVA_WEBHOOKS_TIMEOUT", parse_timeout, 10.0)
    webhooks_backoff: float = _setting("VIVA_WEBHOOKS_BACKOFF", parse_timeout, 5.0)
    webhooks_backoff_max: float = _setting("VIVA_WEBHOOKS_BACKOFF_MAX", parse_timeout, 3600.0)
    webhooks_retry_for: float = _setting("VIVA_WEBHOOKS_RETRY_FOR", parse_timeout, 86400.0)
    webhooks_concurrency: int = _setting("VIVA_WEBHOOKS_CONCURRENCY", parse_concurrency, 8)
    alerts_interval: float = _setting("VIVA_ALERTS_INTERVAL", parse_timeout, 30.0)
    key_expiring_days: int = _setting("VIVA_KEY_EXPIRING_DAYS", parse_int, 7)
    # Where browsers reach this service: the origin of the portal links the admin API hands
    # out (empty: the origin the admin call itself came to).
    public_url: str = _setting("VIVA_PUBLIC_URL", parse_public_url, "")
    # REST API limits and forward-auth inputs: VIVA_REST_*, VIVA_FORWARD_AUTH_*,
    # VIVA_RATELIMIT_HEADERS, parsed together by RestOptions.from_env.
    rest: RestOptions = field(default_factory=RestOptions,
                              metadata={"env": "VIVA_REST_*", "parse": None, "flag": None})

    @classmethod
    def load(cls, flags: Mapping[str, Any] | None = None,
             env: Mapping[str, str] | None = None) -> Settings:
        """Flags (already typed, None when not given) > environment (parsed) > defaults."""
        flags = flags or {}
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            meta = f.metadata
            flag = meta["flag"]
            if flag and flags.get(flag) is not None:
                values[f.name] = flags[flag]
            elif meta["parse"] is not None and (name := _variable_of(meta, env)):
                values[f.name] = meta["parse"](name, env[name])
        values["rest"] = RestOptions.from_env(env)
        if not values.get("backend"):
            values["backend"] = "redis" if values.get("redis_url") else "memory"
        if values["backend"] == "redis" and not values.get("redis_url"):
            values["redis_url"] = "localhost:6379"
        if values.get("redis_persecond") and values["backend"] == "redis" \
                and not values.get("redis_persecond_url"):
            raise SettingsError("REDIS_PERSECOND=true needs REDIS_PERSECOND_URL; expected the "
                                "address of the Redis for one-second limits")
        if values.get("workers", 1) > 1 and values["backend"] == "memory":
            raise SettingsError(f"VIVA_WORKERS={values['workers']} needs BACKEND_TYPE=redis: "
                                "with the memory store each worker would count on its own; "
                                "expected 1 worker, or a Redis store")
        return cls(**values)

    @property
    def plans_dir(self) -> str:
        """Where plans documents are read (full mode): VIVA_PLANS, else the rules path."""
        return self.plans_path or self.rules_path

    @property
    def rules_path(self) -> str:
        """The rules directory: --config / VIVA_CONFIG_DIR, else RUNTIME_ROOT/SUBDIR/APPDIR,
        else ./config."""
        if self.config_dir:
            return self.config_dir
        if self.runtime_root:
            return os.path.join(self.runtime_root, self.runtime_subdirectory,
                                self.runtime_appdirectory)
        return "config"

    def describe(self) -> dict[str, Any]:
        """Every setting by its variable, secrets masked: what ``serve`` logs at debug level."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if (f.name.endswith("_auth") or f.name in _SECRETS) and value:
                value = "***"
            elif f.name == "database_url" and value:
                value = re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", value)
            elif isinstance(value, RestOptions):
                value = {k: sorted(v) if isinstance(v, frozenset) else v
                         for k, v in asdict(value).items()}
            out[f.metadata["env"]] = value
        return out
