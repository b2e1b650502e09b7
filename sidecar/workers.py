"""``--workers N``: N sidecar processes sharing the ports through SO_REUSEPORT.

The supervisor starts each worker as ``python -m sidecar <same arguments>`` with VIVA_WORKER_ID
set, forwards SIGTERM/SIGINT, restarts a worker that crashes, and stops everything when a
worker exits on a configuration error (exit 1 or 2: restarting would fail the same way).
Metrics stay correct across workers through prometheus-client's multiprocess mode: every worker
writes to files in one PROMETHEUS_MULTIPROC_DIR, and any worker's /metrics sums them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

from sidecar.settings import Settings

log = logging.getLogger("sidecar.workers")

WORKER_ENV = "VIVA_WORKER_ID"  # set in worker processes by the supervisor
CONFIG_ERRORS = (1, 2)  # the CLI's exit codes for invalid rules and bad settings
RESTART_DELAY = 1.0


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics_dir = tempfile.mkdtemp(prefix="viva-metrics-")
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.exit_code = 0

    def start_worker(self, index: int) -> None:
        env = {**os.environ, WORKER_ENV: str(index),
               "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir}
        argv = [sys.executable, "-m", "sidecar", *sys.argv[1:]]
        self.workers[index] = subprocess.Popen(argv, env=env)

    def stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        self.stopping = True
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def watch(self) -> None:
        """Until stopped: restart crashed workers; stop all on a configuration error."""
        while not self.stopping:
            time.sleep(0.2)
            for index, proc in list(self.workers.items()):
                code = proc.poll()
                if code is None or self.stopping:
                    continue
                self._mark_dead(proc.pid)
                if code in CONFIG_ERRORS:
                    log.error("worker %d exited with %d (configuration); stopping", index, code)
                    self.exit_code = code
                    self.stop()
                    break
                log.error("worker %d exited with %s; restarting it", index, code)
                time.sleep(RESTART_DELAY)
                self.start_worker(index)

    def wait(self) -> None:
        deadline = time.monotonic() + self.settings.shutdown_grace + 5
        for proc in self.workers.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._mark_dead(proc.pid)

    def _mark_dead(self, pid: int) -> None:
        from prometheus_client import multiprocess

        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", self.metrics_dir)
        multiprocess.mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]


def supervise(settings: Settings) -> int:
    supervisor = Supervisor(settings)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    try:
        for index in range(settings.workers):
            supervisor.start_worker(index)
        log.info("started %d workers sharing grpc %d, http %d, debug %d", settings.workers,
                 settings.grpc_port, settings.port, settings.debug_port)
        supervisor.watch()
        supervisor.wait()
    finally:
        shutil.rmtree(supervisor.metrics_dir, ignore_errors=True)
    return supervisor.exit_code
