"""Hot reload: every way a rules directory changes in practice, through inotify and through the
poll; an invalid version never replaces the running rules.

The event tests use a 60 s poll so only inotify events can make them pass in time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest

from sidecar.rules import watcher
from sidecar.rules.model import RuleSet
from sidecar.rules.watcher import RulesManager, watch_targets
from tests.rules.layouts import domain_yaml, make_configmap, swap_symlink, write, write_atomically

# A change must be live within about a second (the debounce is 0.1 s).
RELOAD_DEADLINE = 1.5
EVENTS_ONLY = 60.0


async def eventually(
    check: Callable[[], Any], timeout: float = RELOAD_DEADLINE, interval: float = 0.02
) -> Any:
    """Poll ``check`` until it returns something truthy without raising; fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            if loop.time() > deadline:
                raise AssertionError(f"condition still false after {timeout}s: {result!r}")
        except AssertionError:
            if loop.time() > deadline:
                raise
        await asyncio.sleep(interval)


class Start(Protocol):
    def __call__(
        self, path: Path, poll_interval: float = EVENTS_ONLY, **kw: Any
    ) -> RulesManager: ...


class Recorder:
    """Stands in for Engine.set_rules: every RuleSet the manager applied, in order."""

    def __init__(self) -> None:
        self.sets: list[RuleSet] = []

    def __call__(self, rules: RuleSet) -> None:
        self.sets.append(rules)


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    managers: list[RulesManager] = []

    def start_manager(path: Path, poll_interval: float = EVENTS_ONLY, **kw: Any) -> RulesManager:
        manager = RulesManager(str(path), Recorder(), poll_interval=poll_interval, **kw)
        manager.load()
        manager.start(asyncio.get_running_loop())
        managers.append(manager)
        return manager

    yield start_manager
    for manager in managers:
        await manager.stop()


def limits(manager: RulesManager) -> dict[str, int]:
    """{domain: requests_per_unit of its one limit} of the running rules."""
    assert manager.current is not None
    return {
        key.split(".")[0]: limit.requests_per_unit for key, limit in manager.current.iter_limits()
    }


def applied(manager: RulesManager) -> list[RuleSet]:
    assert isinstance(manager.apply, Recorder)
    return manager.apply.sets


# -- edits through inotify ------------------------------------------------------------------------


async def test_plain_edit(tmp_path: Path, start: Start) -> None:
    rules = write(tmp_path / "a.yaml", domain_yaml("a", 1))
    manager = start(tmp_path)
    assert limits(manager) == {"a": 1}
    with open(rules, "w") as fh:  # truncate and write in place, as an editor without backups does
        fh.write(domain_yaml("a", 2))
    await eventually(lambda: limits(manager) == {"a": 2})
    assert manager.status.successes == 2 and len(applied(manager)) == 2


async def test_atomic_rename(tmp_path: Path, start: Start) -> None:
    rules = write(tmp_path / "a.yaml", domain_yaml("a", 1))
    manager = start(tmp_path)
    write_atomically(rules, domain_yaml("a", 3))
    await eventually(lambda: limits(manager) == {"a": 3})


async def test_adding_and_deleting_a_file(tmp_path: Path, start: Start) -> None:
    write(tmp_path / "a.yaml", domain_yaml("a", 1))
    manager = start(tmp_path)
    added = write(tmp_path / "team" / "b.yaml", domain_yaml("b", 5))  # in a new subdirectory
    await eventually(lambda: limits(manager) == {"a": 1, "b": 5})
    added.unlink()
    await eventually(lambda: limits(manager) == {"a": 1})
    assert (manager.status.successes, manager.status.errors) == (3, 0)  # TC-30


async def test_configmap_data_swap(tmp_path: Path, start: Start) -> None:
    make_configmap(tmp_path, "a", {"rules.yaml": domain_yaml("a", 1)})
    manager = start(tmp_path)
    assert limits(manager) == {"a": 1}
    make_configmap(tmp_path, "b", {"rules.yaml": domain_yaml("a", 2)})
    await eventually(lambda: limits(manager) == {"a": 2})
    make_configmap(
        tmp_path, "c", {"rules.yaml": domain_yaml("a", 3), "more.yaml": domain_yaml("m")}
    )
    await eventually(lambda: limits(manager) == {"a": 3, "m": 1})
    make_configmap(tmp_path, "d", {"more.yaml": domain_yaml("m", 4)})
    await eventually(lambda: limits(manager) == {"m": 4})


async def test_whole_directory_symlink_swap(tmp_path: Path, start: Start) -> None:
    write(tmp_path / "v1" / "a.yaml", domain_yaml("a", 1))
    write(tmp_path / "v2" / "a.yaml", domain_yaml("a", 2))
    os.symlink("v1", tmp_path / "current")
    manager = start(tmp_path / "current")
    swap_symlink(tmp_path / "current", "v2")
    await eventually(lambda: limits(manager) == {"a": 2})
    # The watch moved to the new target: edits inside v2 are seen, edits to v1 are not rules.
    write_atomically(tmp_path / "v2" / "a.yaml", domain_yaml("a", 22))
    await eventually(lambda: limits(manager) == {"a": 22})
    assert (str(tmp_path / "v2"), True) in watch_targets(str(tmp_path / "current"))


async def test_runtime_root_symlink_swap_above_the_rules_directory(
    tmp_path: Path, start: Start
) -> None:
    # RUNTIME_ROOT=/srv/runtime_data/current, RUNTIME_SUBDIRECTORY=ratelimit, app dir config.
    for version, rpu in (("v1", 1), ("v2", 2)):
        write(tmp_path / version / "ratelimit" / "config" / "a.yaml", domain_yaml("a", rpu))
    os.symlink("v1", tmp_path / "current")
    manager = start(tmp_path / "current" / "ratelimit" / "config")
    swap_symlink(tmp_path / "current", "v2")
    await eventually(lambda: limits(manager) == {"a": 2})
    write_atomically(tmp_path / "v2" / "ratelimit" / "config" / "a.yaml", domain_yaml("a", 7))
    await eventually(lambda: limits(manager) == {"a": 7})


async def test_rules_directory_created_after_start(tmp_path: Path, start: Start) -> None:
    rules_dir = tmp_path / "rules"
    manager = start(rules_dir)
    assert manager.current is None and manager.status.errors == 1
    write(tmp_path / "staging" / "a.yaml", domain_yaml("a", 1))
    os.rename(tmp_path / "staging", rules_dir)
    await eventually(lambda: manager.current is not None and limits(manager) == {"a": 1})
    write_atomically(rules_dir / "a.yaml", domain_yaml("a", 2))  # the new directory is watched
    await eventually(lambda: limits(manager) == {"a": 2})


async def test_single_file_path(tmp_path: Path, start: Start) -> None:
    rules = write(tmp_path / "rules.yaml", domain_yaml("a", 1))
    manager = start(rules)
    write_atomically(rules, domain_yaml("a", 2))
    await eventually(lambda: limits(manager) == {"a": 2})


# -- invalid versions -----------------------------------------------------------------------------


async def test_invalid_version_keeps_the_previous_rules(tmp_path: Path, start: Start) -> None:
    results: list[tuple[bool, RuleSet | None]] = []
    rules = write(tmp_path / "a.yaml", domain_yaml("a", 1))
    manager = start(tmp_path, on_result=lambda ok, rs: results.append((ok, rs)))
    good = manager.current
    write_atomically(
        rules, "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: minutes}\n"
    )
    await eventually(lambda: manager.status.errors == 1)
    assert manager.current is good and applied(manager) == [good]
    assert manager.status.last_error == (
        f"{rules}:4: descriptors[0].rate_limit.unit: invalid rate limit unit 'minutes'; expected "
        "one of second, minute, hour, day, week, month, year (any case), or 'unlimited: true'\n"
        f"{rules}:4: descriptors[0].rate_limit.requests_per_unit: requests_per_unit is missing; "
        "expected a whole number from 0 to 4294967295 (0 refuses every request)"
    )
    assert manager.last_exception is not None and len(manager.last_exception.errors) == 2
    write_atomically(rules, domain_yaml("a", 9))
    await eventually(lambda: limits(manager) == {"a": 9})
    assert manager.status.last_error == "" and manager.last_exception is None
    assert (manager.status.successes, manager.status.errors) == (2, 1)
    assert [ok for ok, _ in results] == [True, False, True]
    assert results[-1][1] is manager.current


async def test_a_bad_new_file_does_not_replace_good_ones(tmp_path: Path, start: Start) -> None:
    write(tmp_path / "a.yaml", domain_yaml("a", 1))
    manager = start(tmp_path)
    write(tmp_path / "b.yaml", domain_yaml("a", 2))  # a second file for the same domain
    await eventually(lambda: "duplicate domain 'a'" in manager.status.last_error)
    assert limits(manager) == {"a": 1}
    (tmp_path / "b.yaml").unlink()
    await eventually(lambda: manager.status.last_error == "")
    assert limits(manager) == {"a": 1} and manager.status.successes == 1  # same version as before


async def test_a_broken_version_is_counted_once_by_events_and_poll(
    tmp_path: Path, start: Start
) -> None:
    rules = write(tmp_path / "a.yaml", domain_yaml("a", 1))
    manager = start(tmp_path, poll_interval=0.02)
    polls: list[int] = []
    fingerprint = manager._fingerprint
    manager._fingerprint = lambda: polls.append(1) or fingerprint()  # type: ignore[method-assign]
    write_atomically(rules, "domain: a\ndescriptors: [")
    await eventually(lambda: manager.status.errors == 1)
    seen = len(polls)
    await eventually(lambda: len(polls) >= seen + 5)  # the poll looked at it five more times
    assert manager.status.errors == 1


# -- the polling fallback -------------------------------------------------------------------------


class NoEvents:
    """An observer that never reports anything, as on a volume without inotify."""

    def schedule(self, *args: Any, **kwargs: Any) -> None: ...
    def unschedule_all(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...


async def test_polling_alone_picks_up_changes(
    tmp_path: Path, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher, "Observer", NoEvents)
    rules = write(tmp_path / "a.yaml", domain_yaml("a", 1))
    manager = start(tmp_path, poll_interval=0.05)
    write_atomically(rules, domain_yaml("a", 2))
    await eventually(lambda: limits(manager) == {"a": 2})
    write(tmp_path / "b.yaml", domain_yaml("b", 3))
    await eventually(lambda: limits(manager) == {"a": 2, "b": 3})
    make_configmap(tmp_path / "cm", "x", {"c.yaml": domain_yaml("c", 4)})
    await eventually(lambda: limits(manager) == {"a": 2, "b": 3, "c": 4})
    shutil.rmtree(tmp_path / "cm")
    await eventually(lambda: limits(manager) == {"a": 2, "b": 3})


async def test_polling_survives_an_unexpected_failure(
    tmp_path: Path, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher, "Observer", NoEvents)
    rules = write(tmp_path / "a.yaml", domain_yaml("a", 1))
    manager = start(tmp_path, poll_interval=0.02)
    fingerprint = manager._fingerprint
    failures: list[int] = []

    def flaky() -> Any:
        if len(failures) < 2:
            failures.append(1)
            raise OSError("volume went away")
        return fingerprint()

    manager._fingerprint = flaky  # type: ignore[method-assign]
    write_atomically(rules, domain_yaml("a", 2))
    await eventually(lambda: limits(manager) == {"a": 2})
    assert len(failures) == 2


# -- what is watched ------------------------------------------------------------------------------


def test_watch_targets_cover_every_symlink_on_the_way(tmp_path: Path) -> None:
    write(tmp_path / "v1" / "ratelimit" / "config" / "a.yaml", "")
    os.symlink("v1", tmp_path / "current")
    path = tmp_path / "current" / "ratelimit" / "config"
    assert dict(watch_targets(str(path))) == {
        str(tmp_path / "v1" / "ratelimit" / "config"): True,  # the rules, recursively
        str(tmp_path / "v1" / "ratelimit"): False,  # the folder holding the path
        str(tmp_path): False,  # where the 'current' symlink is swapped
    }


async def test_unchanged_content_is_not_applied_again(tmp_path: Path, start: Start) -> None:
    rules = write(tmp_path / "a.yaml", domain_yaml("a", 1))
    manager = start(tmp_path)
    attempted = manager.status.last_attempt_at
    write_atomically(rules, domain_yaml("a", 1))
    await eventually(lambda: manager.status.last_attempt_at > attempted)
    assert manager.status.successes == 1 and len(applied(manager)) == 1


async def test_a_change_between_load_and_start_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher, "Observer", NoEvents)  # no events, no poll: only start() looks
    rules = write(tmp_path / "a.yaml", domain_yaml("a", 1))
    manager = RulesManager(str(tmp_path), Recorder(), poll_interval=0)
    assert manager.load()
    write_atomically(rules, domain_yaml("a", 2))  # e.g. while the servers were starting
    manager.start(asyncio.get_running_loop())
    try:
        await eventually(lambda: limits(manager) == {"a": 2})
    finally:
        await manager.stop()
