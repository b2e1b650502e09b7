"""Viva Rate Limiter: an Envoy RateLimitService sidecar."""

__version__ = "0.1.0"
