"""Settings: flags > environment (reference names) > defaults; bad values name the variable."""

from __future__ import annotations

import pytest

from sidecar.app import make_store
from sidecar.errors import SettingsError
from sidecar.settings import Settings, parse_duration
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions, redis_url
from sidecar.storage.redis.store import RedisStore


def load(flags: dict[str, object] | None = None, **env: str) -> Settings:
    return Settings.load(flags=flags, env=env)


def test_defaults() -> None:
    s = load()
    assert (s.host, s.port, s.grpc_host, s.grpc_port, s.debug_host, s.debug_port) == (
        "0.0.0.0", 8080, "0.0.0.0", 8081, "0.0.0.0", 6070)
    assert (s.backend, s.redis_url) == ("memory", "")
    assert (s.near_limit_ratio, s.expiration_jitter_max_seconds, s.cache_key_prefix) == (
        0.8, 300, "")
    assert not (s.shadow_mode or s.quota_mode or s.response_headers
                or s.stop_increment_when_over_limit or s.force_start_without_initial_config
                or s.merge_domain_config or s.healthy_with_config)
    assert (s.limit_header, s.remaining_header, s.reset_header) == (
        "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
    assert s.rules_path == "config"
    assert s.log_level == "warn"


def test_reference_environment_names() -> None:
    s = load(PORT="1", GRPC_PORT="2", DEBUG_PORT="3", HOST="127.0.0.1", GRPC_HOST="::1",
             DEBUG_HOST="localhost", REDIS_URL="redis:6379", REDIS_AUTH="user:pw",
             REDIS_TLS="true", REDIS_POOL_SIZE="4", REDIS_TIMEOUT="2s",
             NEAR_LIMIT_RATIO="0.5", SHADOW_MODE="true", QUOTA_MODE="True",
             LIMIT_RESPONSE_HEADERS_ENABLED="1", LIMIT_LIMIT_HEADER="A-Limit",
             LIMIT_REMAINING_HEADER="A-Remaining", LIMIT_RESET_HEADER="A-Reset",
             CACHE_KEY_PREFIX="prefix:", EXPIRATION_JITTER_MAX_SECONDS="0",
             STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT="true", MERGE_DOMAIN_CONFIG="true",
             FORCE_START_WITHOUT_INITIAL_CONFIG="true",
             HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED="true", LOG_LEVEL="DEBUG",
             LOG_FORMAT="json")
    assert (s.port, s.grpc_port, s.debug_port) == (1, 2, 3)
    assert (s.host, s.grpc_host, s.debug_host) == ("127.0.0.1", "::1", "localhost")
    assert (s.backend, s.redis_url, s.redis_auth, s.redis_tls) == (
        "redis", "redis:6379", "user:pw", True)
    assert (s.redis_pool_size, s.redis_timeout) == (4, 2.0)
    assert (s.near_limit_ratio, s.shadow_mode, s.quota_mode, s.response_headers) == (
        0.5, True, True, True)
    assert (s.limit_header, s.remaining_header, s.reset_header) == (
        "A-Limit", "A-Remaining", "A-Reset")
    assert (s.cache_key_prefix, s.expiration_jitter_max_seconds) == ("prefix:", 0)
    assert s.stop_increment_when_over_limit and s.merge_domain_config
    assert s.force_start_without_initial_config and s.healthy_with_config
    assert (s.log_level, s.log_format) == ("debug", "json")


def test_flags_beat_environment_beats_defaults() -> None:
    env = {"GRPC_PORT": "9001", "PORT": "9002", "REDIS_URL": "envhost:1"}
    s = Settings.load(flags={"grpc_port": 9000, "http_port": None, "redis_url": "flaghost:2"},
                      env=env)
    assert (s.grpc_port, s.port, s.debug_port, s.redis_url) == (9000, 9002, 6070, "flaghost:2")
    assert Settings.load(flags={"backend": "memory"}, env=env).backend == "memory"


def test_os_environ_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG_PORT", "7070")
    assert Settings.load().debug_port == 7070


@pytest.mark.parametrize(("text", "seconds"), [
    ("50ms", 0.05), ("2s", 2.0), ("1m30s", 90.0), ("1h", 3600.0), ("1.5s", 1.5),
    ("250us", 0.00025), ("100ns", 1e-7), ("3", 3.0), ("0.25", 0.25), (" 10s ", 10.0),
])
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration("REDIS_TIMEOUT", text) == pytest.approx(seconds)
    assert load(REDIS_TIMEOUT=text).redis_timeout == pytest.approx(seconds)


@pytest.mark.parametrize(("env", "words"), [
    ({"PORT": "abc"}, "PORT='abc' is not a whole number"),
    ({"GRPC_PORT": "70000"}, "GRPC_PORT=70000 is out of range"),
    ({"DEBUG_PORT": "-1"}, "DEBUG_PORT=-1 is out of range"),
    ({"PORT": ""}, "PORT=''"),
    ({"SHADOW_MODE": "maybe"}, "SHADOW_MODE='maybe' is not a boolean"),
    ({"NEAR_LIMIT_RATIO": "1.5"}, "NEAR_LIMIT_RATIO=1.5 is out of range"),
    ({"NEAR_LIMIT_RATIO": "most"}, "NEAR_LIMIT_RATIO='most' is not a number"),
    ({"NEAR_LIMIT_RATIO": "nan"}, "NEAR_LIMIT_RATIO"),
    ({"REDIS_TIMEOUT": "fast"}, "REDIS_TIMEOUT='fast' is not a duration"),
    ({"REDIS_TIMEOUT": "-1s"}, "REDIS_TIMEOUT='-1s' is not a duration"),
    ({"REDIS_TIMEOUT": "-5"}, "REDIS_TIMEOUT='-5' is not a duration"),
    ({"REDIS_TIMEOUT": "inf"}, "REDIS_TIMEOUT='inf' is not a duration"),
    ({"REDIS_TIMEOUT": "10 s"}, "REDIS_TIMEOUT='10 s' is not a duration"),
    ({"REDIS_TIMEOUT": "0s"}, "REDIS_TIMEOUT='0s' must be above zero"),
    ({"VIVA_SHUTDOWN_GRACE": "2d"}, "VIVA_SHUTDOWN_GRACE='2d' is not a duration"),
    ({"VIVA_USAGE_FLUSH_INTERVAL": "0s"}, "VIVA_USAGE_FLUSH_INTERVAL='0s' is out of range; "
                                          "expected a duration from 100ms to 1h"),
    ({"VIVA_USAGE_FLUSH_INTERVAL": "2h"}, "VIVA_USAGE_FLUSH_INTERVAL='2h' is out of range"),
    ({"VIVA_USAGE": "sometimes"}, "VIVA_USAGE"),
    ({"BACKEND_TYPE": "memcache"}, "BACKEND_TYPE='memcache' is not supported"),
    ({"REDIS_TYPE": "ring"}, "REDIS_TYPE='ring' is not supported"),
    ({"VIVA_FAILURE_POLICY": "maybe"}, "VIVA_FAILURE_POLICY='maybe' is not supported"),
    ({"REDIS_PIPELINE_WINDOW": "soon"}, "REDIS_PIPELINE_WINDOW='soon' is not a duration"),
    ({"BACKEND_TYPE": "redis", "REDIS_PERSECOND": "true"}, "REDIS_PERSECOND_URL"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud' is not a log level"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' is not supported"),
    ({"EXPIRATION_JITTER_MAX_SECONDS": "-3"}, "EXPIRATION_JITTER_MAX_SECONDS=-3"),
    ({"MODE": "sidecar"}, "MODE='sidecar' is not supported; expected one of standalone, full"),
    ({"VIVA_MODE": "ful"}, "VIVA_MODE='ful' is not supported; expected one of standalone, full"),
])
def test_bad_values_name_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.load(env=env)
    assert words in str(info.value)


@pytest.mark.parametrize(("given", "level"), [("trace", "debug"), ("WARN", "warn"),
                                              ("Info", "info"), ("fatal", "critical"),
                                              ("panic", "critical")])
def test_log_levels_include_logrus_names(given: str, level: str) -> None:
    assert load(LOG_LEVEL=given).log_level == level


def test_backend_type_defaults() -> None:
    assert load().backend == "memory"
    assert (load(REDIS_URL="host:1").backend, load(REDIS_URL="host:1").redis_url) == (
        "redis", "host:1")
    s = load(BACKEND_TYPE="redis")
    assert (s.backend, s.redis_url) == ("redis", "localhost:6379")
    assert load(BACKEND_TYPE="memory", REDIS_URL="host:1").backend == "memory"
    assert load(BACKEND_TYPE="REDIS", REDIS_URL="host:1").backend == "redis"


def test_mode_from_either_name_or_the_flag() -> None:
    assert load().mode == "standalone"
    assert load(MODE="full").mode == "full"
    assert load(VIVA_MODE="FULL").mode == "full"
    assert load(VIVA_MODE="standalone", MODE="full").mode == "standalone"
    assert load({"mode": "standalone"}, MODE="full").mode == "standalone"


def test_redis_addr_is_redis_url_with_the_redis_store() -> None:
    s = load(REDIS_ADDR="redis:6379", MODE="standalone")
    assert (s.backend, s.redis_url, s.redis_type) == ("redis", "redis:6379", "single")
    assert load(REDIS_ADDR="redis:6379", REDIS_URL="other:6379").redis_url == "other:6379"
    assert load(REDIS_ADDR="redis:6379", BACKEND_TYPE="memory").backend == "memory"
    assert load({"redis_url": "flag:1"}, REDIS_ADDR="redis:6379").redis_url == "flag:1"


def test_rules_path_from_runtime_variables() -> None:
    assert load(RUNTIME_ROOT="/srv/runtime_data/current", RUNTIME_SUBDIRECTORY="ratelimit"
                ).rules_path == "/srv/runtime_data/current/ratelimit/config"
    assert load(RUNTIME_ROOT="/data", RUNTIME_SUBDIRECTORY="rl", RUNTIME_APPDIRECTORY="rules"
                ).rules_path == "/data/rl/rules"
    assert load(RUNTIME_ROOT="/data").rules_path == "/data/config"
    assert load(RUNTIME_ROOT="/data", VIVA_CONFIG_DIR="/mine").rules_path == "/mine"
    assert Settings.load(flags={"config": "/flag"}, env={"VIVA_CONFIG_DIR": "/mine"}
                         ).rules_path == "/flag"


def test_describe_masks_the_redis_password() -> None:
    described = load(REDIS_AUTH="secret", REDIS_URL="h:1").describe()
    assert described["REDIS_AUTH"] == "***"
    assert described["REDIS_URL"] == "h:1"
    assert load().describe()["REDIS_AUTH"] == ""


# -- REDIS_URL forms -------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "extra", "expected"), [
    ("localhost:6379", {}, "redis://localhost:6379/0"),
    ("[::1]:6380", {}, "redis://[::1]:6380/0"),
    ("redis.svc:6379", {"tls": True}, "rediss://redis.svc:6379/0"),
    ("redis.svc:6379", {"db": 3}, "redis://redis.svc:6379/3"),
    ("/var/run/nutcracker/ratelimit.sock", {}, "unix:///var/run/nutcracker/ratelimit.sock?db=0"),
    ("relative.sock", {"socket_type": "unix"}, "unix://relative.sock?db=0"),
    ("redis://user:pw@host:1/2", {}, "redis://user:pw@host:1/2"),
    ("redis://host:1", {"tls": True}, "rediss://host:1"),
    ("rediss://host:1", {}, "rediss://host:1"),
    ("unix:///tmp/r.sock", {}, "unix:///tmp/r.sock"),
])
def test_redis_url_forms(url: str, extra: dict[str, object], expected: str) -> None:
    assert redis_url(RedisOptions(url=url, **extra)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["localhost", "host:port", ":6379", "  "])
def test_bad_redis_url_names_the_variable(url: str) -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        redis_url(RedisOptions(url=url))


async def test_make_store_follows_the_settings() -> None:
    assert isinstance(make_store(load()), MemoryStore)
    for url, expected in [("127.0.0.1:1", "redis://127.0.0.1:1/0"),
                          ("/tmp/redis.sock", "unix:///tmp/redis.sock?db=0"),
                          ("redis://127.0.0.1:2/1", "redis://127.0.0.1:2/1")]:
        store = make_store(load(REDIS_URL=url))
        assert isinstance(store, RedisStore)
        assert redis_url(store.opts) == expected
        await store.close()
    with pytest.raises(SettingsError, match="REDIS_URL 'ftp://x' is not a Redis URL"):
        make_store(load(REDIS_URL="ftp://x"))


def test_a_bad_mode_names_the_variable_and_the_accepted_values() -> None:
    with pytest.raises(SettingsError, match="MODE='platform' is not supported; expected one "
                                            "of standalone, full"):
        load(MODE="platform")


def test_full_mode_settings_and_their_secrets_masked() -> None:
    s = load(VIVA_ROOT_KEY="r" * 32, VIVA_DATABASE_URL="postgresql://viva:hunter2@db/viva",
             VIVA_PLANS="/etc/viva/plans.yaml", VIVA_KEY_HEADERS="X-Key, Authorization")
    assert (s.root_key, s.plans_dir, s.key_headers) == (
        "r" * 32, "/etc/viva/plans.yaml", ("x-key", "authorization"))
    assert (load().data_dir, load().plans_dir, load().key_headers) == (
        "./data", "config", ("x-api-key", "authorization"))
    described = s.describe()
    assert described["VIVA_ROOT_KEY"] == "***"
    assert described["VIVA_DATABASE_URL"] == "postgresql://viva:***@db/viva"
    with pytest.raises(SettingsError, match="VIVA_ROOT_KEY is 5 characters long; expected at "
                                            "least 32") as info:
        load(VIVA_ROOT_KEY="short")
    assert "short" not in str(info.value)


def test_webhook_settings_and_the_secret_key_masked() -> None:
    s = load(VIVA_SECRET_KEY="s" * 32, VIVA_SECRET_KEY_PREVIOUS=f"{'a' * 32}, {'b' * 40}",
             VIVA_WEBHOOKS_TIMEOUT="2s", VIVA_WEBHOOKS_RETRY_FOR="24h",
             VIVA_WEBHOOKS_ALLOW_PRIVATE="true", VIVA_KEY_EXPIRING_DAYS="3")
    assert (s.secret_key, s.secret_key_previous) == ("s" * 32, ("a" * 32, "b" * 40))
    assert (s.webhooks_timeout, s.webhooks_retry_for, s.webhooks_allow_private,
            s.key_expiring_days) == (2.0, 86400.0, True, 3)
    defaults = load()
    assert (defaults.secret_key, defaults.webhooks_allow_private, defaults.webhooks_backoff,
            defaults.webhooks_backoff_max, defaults.alerts_interval) == ("", False, 5.0,
                                                                          3600.0, 30.0)
    described = s.describe()
    assert described["VIVA_SECRET_KEY"] == described["VIVA_SECRET_KEY_PREVIOUS"] == "***"
    for bad, says in [({"VIVA_SECRET_KEY": "short"}, "VIVA_SECRET_KEY is 5 characters"),
                      ({"VIVA_SECRET_KEY_PREVIOUS": "x" * 40 + ",tiny"}, "is 4 characters"),
                      ({"VIVA_WEBHOOKS_CONCURRENCY": "0"}, "out of range; expected 1..256"),
                      ({"VIVA_WEBHOOKS_TIMEOUT": "0s"}, "must be above zero")]:
        with pytest.raises(SettingsError, match=says) as info:
            load(**bad)
        assert "short" not in str(info.value) and "tiny" not in str(info.value)
