"""Start-up warnings about the environment: unknown variables with our prefixes, named with the
closest setting, and settings given under two names."""

from __future__ import annotations

from dataclasses import fields

import pytest

from sidecar.envcheck import VARIABLE_PREFIXES, environment_warnings, known_variables
from sidecar.settings import Settings


def test_a_typo_names_the_closest_setting() -> None:
    assert environment_warnings({"REDIS_ADRR": "redis:6379"}) == [
        "`REDIS_ADRR` is not a setting; did you mean `REDIS_ADDR`?"]
    assert environment_warnings({"VIVA_TRANSPROT": "fast"}) == [
        "`VIVA_TRANSPROT` is not a setting; did you mean `VIVA_TRANSPORT`?"]
    assert environment_warnings({"VIVA_FORWARD_AUTH_DENY_STAUTS": "403"}) == [
        "`VIVA_FORWARD_AUTH_DENY_STAUTS` is not a setting; did you mean "
        "`VIVA_FORWARD_AUTH_DENY_STATUS`?"]


def test_a_name_like_nothing_known_points_to_the_readme() -> None:
    (warning,) = environment_warnings({"VIVA_ZZZ": "1"})
    assert warning.startswith("`VIVA_ZZZ` is not a setting; see the README")


def test_every_variable_a_setting_reads_is_silent() -> None:
    env = dict.fromkeys(known_variables(), "x")
    env.pop("REDIS_ADDR")  # (with REDIS_URL it is reported as shadowed, below)
    env.pop("MODE")
    assert environment_warnings(env) == []
    names = {f.metadata["env"] for f in fields(Settings) if f.metadata["parse"] is not None}
    assert {"REDIS_URL", "VIVA_MODE", "VIVA_FORWARD_AUTH_DENY_STATUS", "VIVA_WORKER_ID"} \
        | names <= known_variables()


def test_other_prefixes_are_not_ours() -> None:
    assert environment_warnings({"PATH": "/bin", "HOME": "/", "OTEL_SDK_DISABLED": "true",
                                 "REDISCLI_AUTH": "x", "PYTHONPATH": ".",
                                 "GRPC_VERBOSITY": "debug",  # the gRPC runtime's own
                                 "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": "/etc/ssl/ca.pem"}) == []
    assert all(p.endswith("_") for p in VARIABLE_PREFIXES)


def test_reference_settings_this_service_does_not_read() -> None:
    assert environment_warnings({"REDIS_POOL_ON_EMPTY_BEHAVIOR": "WAIT",
                                 "GRPC_MAX_CONNECTION_AGE": "1h"}) == [
        "`GRPC_MAX_CONNECTION_AGE` is a setting of envoyproxy/ratelimit that this service "
        "does not read",
        "`REDIS_POOL_ON_EMPTY_BEHAVIOR` is a setting of envoyproxy/ratelimit that this service "
        "does not read"]


@pytest.mark.parametrize("env", [
    {"REDIS_SERVICE_HOST": "10.0.0.7", "REDIS_SERVICE_PORT": "6379",
     "REDIS_SERVICE_PORT_TCP_REDIS": "6379", "REDIS_PORT": "tcp://10.0.0.7:6379",
     "REDIS_PORT_6379_TCP": "tcp://10.0.0.7:6379", "REDIS_PORT_6379_TCP_ADDR": "10.0.0.7",
     "REDIS_PORT_6379_TCP_PORT": "6379", "REDIS_PORT_6379_TCP_PROTO": "tcp"},
    {"VIVA_RATE_LIMITER_SERVICE_HOST": "10.0.0.8",
     "VIVA_RATE_LIMITER_PORT_8081_TCP": "tcp://10.0.0.8:8081"},
], ids=["redis-service", "our-own-service"])
def test_kubernetes_service_links_are_not_settings(env: dict[str, str]) -> None:
    assert environment_warnings(env) == []


def test_a_port_that_is_not_a_service_link_is_reported() -> None:
    (warning,) = environment_warnings({"REDIS_PORT": "6379"})
    assert warning.startswith("`REDIS_PORT` is not a setting")


def test_both_names_of_a_setting() -> None:
    env = {"REDIS_URL": "redis://:s3cret@a:6379", "REDIS_ADDR": "b:6379",
           "VIVA_MODE": "standalone", "MODE": "full"}
    warnings = environment_warnings(env)
    assert warnings == [
        "`VIVA_MODE` and `MODE` are both set; `VIVA_MODE` wins, `MODE` is ignored",
        "`REDIS_URL` and `REDIS_ADDR` are both set; `REDIS_URL` wins, `REDIS_ADDR` is ignored"]
    assert not any("s3cret" in w or "b:6379" in w for w in warnings), "names only, never values"
    settings = Settings.load(env=env)
    assert (settings.redis_url, settings.mode) == ("redis://:s3cret@a:6379", "standalone")
