"""Health as the reference defines it: healthy when every component is.

Components: ``sigterm`` (fails once shutdown starts), ``store`` (fails while the counter store is
unreachable) and, with HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED, ``config``.
"""

from __future__ import annotations

from collections.abc import Callable


class Health:
    def __init__(self, require_config: bool = False) -> None:
        self.components: dict[str, bool] = {"sigterm": True, "store": True}
        if require_config:
            self.components["config"] = False
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def ok(self) -> bool:
        return all(self.components.values())

    def set(self, component: str, ok: bool) -> None:
        if component not in self.components:
            return
        before = self.ok
        self.components[component] = ok
        if self.ok != before:
            for listener in self._listeners:
                listener(self.ok)

    def subscribe(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)
        listener(self.ok)
