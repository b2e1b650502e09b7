"""Helpers shared by the tests and the benchmarks (bench/ imports them too): free loopback
ports (ports.py), processes that are always stopped (processes.py), and the real servers they
start -- redis-server, the sidecar itself, Envoy's binary (servers.py)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the project's root
