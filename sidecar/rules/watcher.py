"""Keep the engine on the newest valid rules: watch the rules directory and reload on change.

Watches the real directory (recursively) and the folder that holds the configured path, and
compares resolved paths, which is what catches a Kubernetes ConfigMap's ``..data`` symlink swap
and a swap of the whole directory symlink. A slow poll backs the events up (network volumes,
missed events). An invalid version never replaces the running rules.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from sidecar.errors import RuleSetError
from sidecar.rules.loader import find_rule_files, load_rules
from sidecar.rules.model import RuleSet

log = logging.getLogger("sidecar.rules")

DEBOUNCE_SECONDS = 0.1


@dataclass
class LoadStatus:
    """What /rlconfig shows about loading."""

    successes: int = 0
    errors: int = 0
    last_error: str = ""
    last_error_at: float = 0.0
    last_attempt_at: float = 0.0


class RulesManager:
    """Loads the rules directory into a callback, now and whenever it changes."""

    def __init__(self, path: str, apply: Callable[[RuleSet], None], merge_domains: bool = False,
                 include_dotfiles: bool = False, poll_interval: float = 5.0,
                 on_result: Callable[[bool, RuleSet | None], None] | None = None) -> None:
        self.path = path
        self.apply = apply
        self.merge_domains = merge_domains
        self.include_dotfiles = include_dotfiles
        self.poll_interval = poll_interval
        self.on_result = on_result
        self.status = LoadStatus()
        self.current: RuleSet | None = None
        self.last_exception: RuleSetError | None = None
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._watched_real = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._poller: asyncio.Task[None] | None = None

    def load(self) -> bool:
        """Load now. True when a valid set is active afterwards (new or unchanged)."""
        self.status.last_attempt_at = time.time()
        try:
            rules = load_rules(self.path, self.merge_domains, self.include_dotfiles)
        except RuleSetError as exc:
            self.last_exception = exc
            self.status.errors += 1
            self.status.last_error = str(exc)
            self.status.last_error_at = time.time()
            log.error("Error loading new configuration, keeping the previous rules: %s", exc)
            if self.on_result:
                self.on_result(False, None)
            return False
        self.status.last_error = ""
        self.last_exception = None
        if self.current is not None and rules.version == self.current.version:
            return True
        self.current = rules
        self.status.successes += 1
        self.apply(rules)
        log.warning("loaded rules version %s: %d domain(s) from %d file(s)", rules.version,
                    len(rules.domains), len(rules.files))
        if self.on_result:
            self.on_result(True, rules)
        return True

    # -- watching ----------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._observer = Observer()
        self._watch()
        self._observer.start()
        if self.poll_interval > 0:
            self._poller = loop.create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self._pending is not None:
            self._pending.cancel()
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 2.0)

    def _watch(self) -> None:
        assert self._observer is not None
        self._observer.unschedule_all()
        handler = _Changed(self._on_event)
        absolute = os.path.abspath(self.path)
        real = os.path.realpath(absolute)
        self._watched_real = real
        parents = {os.path.dirname(absolute), os.path.dirname(real)}
        targets = [(real, os.path.isdir(real))] + [(p, False) for p in parents if p != real]
        for target, recursive in targets:
            if os.path.isdir(target):
                try:
                    self._observer.schedule(handler, target, recursive=recursive)
                except OSError as exc:  # e.g. inotify watch limit: the poll still works
                    log.warning("cannot watch %s (%s); relying on polling", target, exc)

    def _on_event(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._schedule_reload)

    def _schedule_reload(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        assert self._loop is not None
        self._pending = self._loop.call_later(DEBOUNCE_SECONDS, self._reload)

    def _reload(self) -> None:
        self._pending = None
        if os.path.realpath(os.path.abspath(self.path)) != self._watched_real:
            self._watch()
        self.load()

    async def _poll(self) -> None:
        seen = self._fingerprint()
        while True:
            await asyncio.sleep(self.poll_interval)
            now = self._fingerprint()
            if now != seen:
                seen = now
                self._reload()

    def _fingerprint(self) -> tuple[tuple[str, str, int, int], ...]:
        """Resolved path, size and mtime of every rules file: changes when any file does."""
        out = []
        for name in find_rule_files(self.path, self.include_dotfiles) \
                if os.path.exists(self.path) else []:
            try:
                st = os.stat(name)
            except OSError:
                continue
            out.append((name, os.path.realpath(name), st.st_size, st.st_mtime_ns))
        return tuple(out)


class _Changed(FileSystemEventHandler):
    def __init__(self, notify: Callable[[], None]) -> None:
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        self.notify()
