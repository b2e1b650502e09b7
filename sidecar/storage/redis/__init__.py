"""Counters in Redis (standalone, Sentinel, Cluster): the store, where its commands go
(topology), the clients, cross-request pipelines (batching), a breaker per endpoint, the Lua
twins of storage/algorithms.py (scripts, lua/), and resp (the native engine's raw RESP link).

redis-py is imported only when the settings choose Redis for the Python engine (it costs
resident memory); options, breaker, scripts and resp load none of it."""
