"""Environment variable text → typed values, each error a SettingsError naming the variable
and what is expected. Shared by settings.py and the REST options (which settings.py imports)."""

from __future__ import annotations

from sidecar.errors import SettingsError

_TRUE = {"1", "t", "true", "yes", "y", "on"}
_FALSE = {"0", "f", "false", "no", "n", "off", ""}


def parse_bool(name: str, text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise SettingsError(f"{name}={text!r} is not a boolean; expected true or false")


def parse_int(name: str, text: str, minimum: int = 0, maximum: int = 2**63) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a whole number") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name}={value} is out of range; expected {minimum}..{maximum}")
    return value
