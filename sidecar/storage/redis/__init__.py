"""Counters in Redis (standalone, Sentinel, Cluster): the store, where its commands go
(topology), the clients, cross-request pipelines (batching), a breaker per endpoint, the Lua
twins of storage/algorithms.py (scripts, lua/).

Only the composition root imports it, and only when the settings choose Redis (redis-py costs
resident memory); options.py alone loads no redis-py."""
