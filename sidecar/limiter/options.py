"""The engine's behaviour that comes from the settings (the reference's variables)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineOptions:
    """Engine behaviour that comes from settings."""

    cache_key_prefix: str = ""
    near_limit_ratio: float = 0.8
    shadow_mode: bool = False
    quota_mode: bool = False
    stop_increment_when_over_limit: bool = False
    expiration_jitter_max_seconds: int = 300
    response_headers: bool = False
    limit_header: str = "RateLimit-Limit"
    remaining_header: str = "RateLimit-Remaining"
    reset_header: str = "RateLimit-Reset"
