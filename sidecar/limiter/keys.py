"""Counter keys, byte for byte as envoyproxy/ratelimit builds them.

``<prefix><domain>_<key>_<value>_[<key>_<value>_…]<window start>``; nothing is escaped, an empty
value gives ``key__``, and a share_threshold entry uses its pattern instead of the request value.
"""

from __future__ import annotations

from sidecar.model import Entries


def descriptor_key(prefix: str, domain: str, entries: Entries,
                   shared_values: tuple[str | None, ...] = ()) -> str:
    """The window-independent part of a counter key (everything but the window start)."""
    if shared_values:
        parts = [f"{k}_{s if s is not None else v}_"
                 for (k, v), s in zip(entries, shared_values, strict=True)]
    else:
        parts = [f"{k}_{v}_" for k, v in entries]
    return f"{prefix}{domain}_{''.join(parts)}"
