"""Keep the engine on the newest valid rules: watch the rules directory and reload on change.

Watches the real rules directory (recursively), the folder that holds the configured path and
the folder of every symlink on the way to it, and compares resolved paths after each change.
That is what catches a Kubernetes ConfigMap's ``..data`` swap, a swap of the whole directory
symlink (``current -> v2``) and a swap of a symlink higher up (``RUNTIME_ROOT``). A slow poll
of file fingerprints backs the events up (network volumes, missed events, no inotify). An
invalid version never replaces the running rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from sidecar.errors import RuleSetError
from sidecar.rules.loader import build_rules, find_rule_files, read_rule_files, rules_version
from sidecar.rules.model import RuleSet

log = logging.getLogger("sidecar.rules")

DEBOUNCE_SECONDS = 0.1

Fingerprint = tuple[tuple[str, str, int, int], ...]
Targets = tuple[tuple[str, bool], ...]  # (resolved directory, recursive)


@dataclass
class LoadStatus:
    """What /rlconfig shows about loading."""

    successes: int = 0
    errors: int = 0
    last_error: str = ""
    last_error_at: float = 0.0
    last_attempt_at: float = 0.0


class FileWatcher:
    """Calls ``load()`` whenever a YAML file under ``path`` changes (events, and a poll every
    ``poll_interval`` seconds as a safety net). Subclasses say what loading means."""

    def __init__(self, path: str, include_dotfiles: bool = False,
                 poll_interval: float = 5.0) -> None:
        self.path = path
        self.include_dotfiles = include_dotfiles
        self.poll_interval = poll_interval
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._targets: Targets = ()
        self._seen: Fingerprint = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._poller: asyncio.Task[None] | None = None

    def load(self) -> bool:
        """Load now; True when a valid version is active afterwards."""
        raise NotImplementedError

    # -- watching ----------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch for changes (events, and a poll every ``poll_interval`` seconds if > 0)."""
        self._loop = loop
        self._start_observer()
        if self._fingerprint() != self._seen:  # changed between load() and now: nothing saw it
            self._schedule_reload()
        if self.poll_interval > 0:
            self._poller = loop.create_task(self._poll())

    def _start_observer(self) -> None:
        self._observer = Observer()
        self._watch()
        try:
            self._observer.start()
        except OSError as exc:  # e.g. no inotify instances left: the poll still works
            log.warning("cannot watch %s for changes (%s); relying on polling", self.path, exc)
            self._observer = None

    async def stop(self) -> None:
        self._loop = None
        if self._pending is not None:
            self._pending.cancel()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 2.0)

    def _watch(self) -> None:
        """(Re)schedule the observer on the directories the path resolves through now."""
        self._targets = watch_targets(self.path)
        if self._observer is None:
            return
        self._observer.unschedule_all()
        handler = _Changed(self._on_event)
        for target, recursive in self._targets:
            try:
                self._observer.schedule(handler, target, recursive=recursive)
            except OSError as exc:  # e.g. inotify watch limit: the poll still works
                log.warning("cannot watch %s (%s); relying on polling", target, exc)

    def _on_event(self) -> None:
        """Called on the observer's thread."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us: nothing to do
                loop.call_soon_threadsafe(self._schedule_reload)

    def _schedule_reload(self) -> None:
        if self._loop is None:
            return
        if self._pending is not None:
            self._pending.cancel()
        self._pending = self._loop.call_later(DEBOUNCE_SECONDS, self._reload)

    def _reload(self) -> None:
        self._pending = None
        if watch_targets(self.path) != self._targets:
            self._watch()
        self.load()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                if self._fingerprint() != self._seen:
                    self._reload()
            except Exception:  # the poll is the safety net: it must outlive any one failure
                log.exception("poll of %s failed; trying again in %ss", self.path,
                              self.poll_interval)

    def _fingerprint(self) -> Fingerprint:
        """Resolved path, size and mtime of every rules file: changes when any file does."""
        names = (
            find_rule_files(self.path, self.include_dotfiles) if os.path.exists(self.path) else []
        )
        out = []
        for name in names:
            try:
                st = os.stat(name)
            except OSError:
                continue
            out.append((name, os.path.realpath(name), st.st_size, st.st_mtime_ns))
        return tuple(out)


class RulesManager(FileWatcher):
    """Loads the rules directory into a callback, now and whenever it changes."""

    def __init__(
        self,
        path: str,
        apply: Callable[[RuleSet], None],
        merge_domains: bool = False,
        include_dotfiles: bool = False,
        poll_interval: float = 5.0,
        on_result: Callable[[bool, RuleSet | None], None] | None = None,
        check: Callable[[RuleSet], None] | None = None,
    ) -> None:
        super().__init__(path, include_dotfiles, poll_interval)
        self.apply = apply
        # Refuses (RuleSetError) valid rules the engine in use cannot run, as invalid ones are.
        self.check = check
        self.merge_domains = merge_domains
        self.on_result = on_result
        self.status = LoadStatus()
        self.current: RuleSet | None = None
        self.last_exception: RuleSetError | None = None
        self._attempted = ""  # version of the last content parsed, good or bad

    def load(self) -> bool:
        """Load now. True when a valid set is active afterwards (new or unchanged).

        Content already tried is not parsed again, so an event and the poll seeing the same
        change count one success or one error, not two.
        """
        self.status.last_attempt_at = time.time()
        # Taken before reading, so a change made during the read is seen by the next poll.
        self._seen = self._fingerprint()
        version = ""
        try:
            files = read_rule_files(self.path, self.include_dotfiles)
            version = rules_version(files)
            if version == self._attempted:
                return self.last_exception is None
            rules = build_rules(files, self.merge_domains)
            if self.check is not None:
                self.check(rules)
        except RuleSetError as exc:
            self._attempted = version
            self._failed(exc)
            return False
        self._attempted = version
        self.status.last_error = ""
        self.last_exception = None
        if self.current is None or rules.version != self.current.version:
            self._loaded(rules)
        return True

    def _failed(self, exc: RuleSetError) -> None:
        self.last_exception = exc
        self.status.errors += 1
        self.status.last_error = str(exc)
        self.status.last_error_at = time.time()
        log.error("Error loading new configuration, keeping the previous rules: %s", exc)
        if self.on_result:
            self.on_result(False, None)

    def _loaded(self, rules: RuleSet) -> None:
        self.current = rules
        self.status.successes += 1
        self.apply(rules)
        log.warning(
            "loaded rules version %s: %d domain(s) from %d file(s)",
            rules.version,
            len(rules.domains),
            len(rules.files),
        )
        if self.on_result:
            self.on_result(True, rules)


def watch_targets(path: str) -> Targets:
    """The resolved directories to watch for ``path``, and whether recursively.

    The rules directory itself (recursively), the folders holding the path and its target, and
    the folder of each symlink on the way, where a swap of that symlink shows up.
    """
    absolute = os.path.abspath(path)
    real = os.path.realpath(absolute)
    found: dict[str, bool] = {}
    if os.path.isdir(real):
        found[real] = True
    folders = [os.path.dirname(absolute), os.path.dirname(real), *_symlink_folders(absolute)]
    for folder in folders:
        resolved = os.path.realpath(folder)
        if os.path.isdir(resolved):
            found.setdefault(resolved, False)
    return tuple(sorted(found.items()))


def _symlink_folders(absolute: str) -> list[str]:
    """The folder holding each symlink among ``absolute`` and its ancestors."""
    out: list[str] = []
    current = absolute
    while True:
        parent = os.path.dirname(current)
        if os.path.islink(current):
            out.append(parent)
        if parent == current:
            return out
        current = parent


class _Changed(FileSystemEventHandler):
    def __init__(self, notify: Callable[[], None]) -> None:
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Reading the rules opens them: reacting to that would reload forever.
        if event.event_type in ("opened", "closed_no_write"):
            return
        self.notify()
