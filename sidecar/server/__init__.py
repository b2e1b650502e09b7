"""Transports over the engine: gRPC (RLS + health), HTTP (/json, /healthcheck, /rlconfig)."""
