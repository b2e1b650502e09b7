"""The bodies of /v1/check and /v1/report, and of /v1/leases and its renewals: declared once
with msgspec, checked against that declaration, and described by it in /openapi.json
(openapi.py).

The declaration takes its limits (descriptors, entries, hits) from RestOptions, so it is built
when the API starts. A body is read as JSON by the standard library (as before: NaN is a number,
an integer of thousands of digits is not JSON), then converted by msgspec; a ValidationError's
path (``$.descriptors[0][1].key``) names the field of the 400 answer (``descriptors[0][1].key``)
and the message says what is expected there, in the words of the field's role.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from sidecar.errors import RequestError
from sidecar.model import Entries
from sidecar.transports.rest.options import RestOptions

IDENTIFIER_KEY = "identifier"  # the descriptor entry an identifier fills
MAX_TTL_SECONDS = 31_536_000  # a year: a rule's lease_ttl caps it in any case
_TEXT = Annotated[str, Meta(min_length=1)]
_TTL = Annotated[float, Meta(ge=0.001, le=MAX_TTL_SECONDS, description=(
    "seconds a lease holds its slots unless renewed (default and most: the rule's lease_ttl)"))]
_ENTRY_SHAPE = '{"key": …, "value": …}'
_NOT_JSON = ('the body is not JSON; expected an object like {"namespace": "api_requests", '
             '"identifier": "user_123", "hits": 1}')
_NOT_JSON_LEASE = ('the body is not JSON; expected an object like {"namespace": "ws", '
                   '"identifier": "user_123", "ttl": 60}')
_NOT_JSON_RENEW = 'the body is not JSON; expected nothing, or an object like {"ttl": 60}'


class FieldError(RequestError):
    """A request value is invalid; ``field`` names it (None when it is the body itself)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message, field)


class Entry(msgspec.Struct, forbid_unknown_fields=True):
    """One entry of a descriptor."""

    key: _TEXT
    value: _TEXT


@dataclass(frozen=True, slots=True)
class CheckCall:
    """A valid body, as the engine is asked."""

    namespace: str
    descriptors: list[Entries]
    hits: int
    itemized: bool  # sent as descriptors: answer each one too


@dataclass(frozen=True, slots=True)
class LeaseCall:
    """A valid /v1/leases body, as the leases are asked."""

    namespace: str
    descriptors: list[Entries]
    ttl_ms: int | None  # None: the rules' lease_ttl
    itemized: bool


class RequestTypes:
    """The msgspec declarations of the bodies (``CheckRequest``, ``LeaseRequest``,
    ``RenewRequest``) with one RestOptions' limits."""

    def __init__(self, options: RestOptions) -> None:
        self.options = options
        entries = Annotated[list[Entry], Meta(min_length=1, max_length=options.max_entries)]
        target: list[tuple[str, Any, Any]] = [
            ("namespace", _TEXT, msgspec.NODEFAULT),
            ("identifier", _TEXT | UnsetType, UNSET),
            ("descriptors", Annotated[list[entries], Meta(
                min_length=1, max_length=options.max_descriptors)] | UnsetType, UNSET),
        ]
        self.check: type[msgspec.Struct] = msgspec.defstruct("CheckRequest", [
            *target, ("hits", Annotated[int, Meta(ge=0, le=options.max_hits)], 1),
        ], forbid_unknown_fields=True, module=__name__)
        self.lease: type[msgspec.Struct] = msgspec.defstruct(
            "LeaseRequest", [*target, ("ttl", _TTL | UnsetType, UNSET)],
            forbid_unknown_fields=True, module=__name__)
        self.renew: type[msgspec.Struct] = msgspec.defstruct(
            "RenewRequest", [("ttl", _TTL | UnsetType, UNSET)], forbid_unknown_fields=True,
            module=__name__)

    def parse(self, body: bytes) -> CheckCall:
        """The body as the engine is asked, or FieldError naming what is wrong."""
        checked = self._convert(body, self.check, _CHECK_FIELDS, _NOT_JSON)
        namespace, descriptors, itemized = _target(checked)
        return CheckCall(namespace, descriptors, checked.hits, itemized)

    def parse_lease(self, body: bytes) -> LeaseCall:
        """A /v1/leases body, or FieldError naming what is wrong."""
        checked = self._convert(body, self.lease, _LEASE_FIELDS, _NOT_JSON_LEASE)
        namespace, descriptors, itemized = _target(checked)
        return LeaseCall(namespace, descriptors, _ttl_ms(checked.ttl), itemized)

    def parse_renew(self, body: bytes) -> int | None:
        """The ttl (ms) of a renewal's body (empty: none asked), or FieldError."""
        if not body.strip():
            return None
        return _ttl_ms(self._convert(body, self.renew, ("ttl",), _NOT_JSON_RENEW).ttl)

    def _convert(self, body: bytes, kind: type[msgspec.Struct], fields: tuple[str, ...],
                 not_json: str) -> Any:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            raise FieldError(None, not_json) from None
        if isinstance(doc, dict) and isinstance(doc.get("hits"), float) \
                and doc["hits"].is_integer():
            doc["hits"] = int(doc["hits"])  # 2.0 is an integer to JSON Schema, so it is one here
        try:
            return msgspec.convert(doc, kind)
        except msgspec.ValidationError as exc:
            raise self._explain(str(exc), doc, fields) from None

    def _explain(self, error: str, doc: Any, fields: tuple[str, ...]) -> FieldError:
        """msgspec's ValidationError as a FieldError: its path names the field; the message
        says what the field expects."""
        what, _, at = error.partition(" - at `$")
        path = at.rstrip("`")
        named = _NAMED.match(what)
        if named:
            field = _join(path, named["name"])
            if named["how"] == "missing required":
                return FieldError(field, "required; expected a non-empty string")
            allowed = fields if not path else _ENTRY_FIELDS
            return FieldError(field, f"unknown field; expected {', '.join(allowed)}")
        where = path.lstrip(".") or None
        return FieldError(where, self._expected(where, _value_at(doc, path)))

    def _expected(self, field: str | None, value: Any) -> str:
        opts = self.options
        if field is None:
            return "the body must be a JSON object"
        if field == "hits":
            return _hits_problem(value, opts.max_hits)
        if field == "ttl":
            return _ttl_problem(value)
        if field == "descriptors":
            return _list_problem(value, "descriptors", opts.max_descriptors,
                                 f"a list of descriptors, each a list of {_ENTRY_SHAPE} "
                                 "entries;")
        if _DESCRIPTOR.fullmatch(field):
            return _list_problem(value, "entries", opts.max_entries,
                                 f"a list of {_ENTRY_SHAPE} entries,")
        if _ENTRY.fullmatch(field):
            return f"expected an object {_ENTRY_SHAPE}, got {_kind(value)}"
        return _text_problem(value)


_CHECK_FIELDS = ("namespace", "identifier", "descriptors", "hits")
_LEASE_FIELDS = ("namespace", "identifier", "descriptors", "ttl")
_ENTRY_FIELDS = ("key", "value")
_NAMED = re.compile(r"Object (?P<how>contains unknown|missing required) field `(?P<name>.*)`")
_DESCRIPTOR = re.compile(r"descriptors\[\d+\]")
_ENTRY = re.compile(r"descriptors\[\d+\]\[\d+\]")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _target(checked: Any) -> tuple[str, list[Entries], bool]:
    """The namespace, the descriptors and whether they were sent as such (answer each),
    after the checks msgspec's declaration cannot say: one of identifier or descriptors, and
    text the engine can encode."""
    if checked.identifier is not UNSET and checked.descriptors is not UNSET:
        raise FieldError("descriptors", "send either identifier or descriptors, not both")
    _unicode(checked.namespace, "namespace")
    if checked.descriptors is not UNSET:
        descriptors = [tuple((_unicode(e.key, f"descriptors[{i}][{j}].key"),
                              _unicode(e.value, f"descriptors[{i}][{j}].value"))
                             for j, e in enumerate(entries))
                       for i, entries in enumerate(checked.descriptors)]
        return checked.namespace, descriptors, True
    if checked.identifier is UNSET:
        raise FieldError("identifier", "required (a non-empty string), unless descriptors are "
                         "sent")
    entries = ((IDENTIFIER_KEY, _unicode(checked.identifier, "identifier")),)
    return checked.namespace, [entries], False


def _ttl_ms(ttl: Any) -> int | None:
    return None if ttl is UNSET else max(1, round(ttl * 1000))


def check_text(value: Any, name: str) -> str:
    """``value`` as a non-empty string of valid Unicode (for headers and query values)."""
    if not isinstance(value, str) or not value:
        raise FieldError(name, _text_problem(value))
    return _unicode(value, name)


def _unicode(value: str, name: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError(name, "is not valid Unicode text (a lone surrogate)") from None
    return value


def _text_problem(value: Any) -> str:
    if value is None:
        return "required; expected a non-empty string"
    if not isinstance(value, str):
        return f"expected a non-empty string, got {_kind(value)}"
    return "must not be empty"


def _hits_problem(value: Any, maximum: int) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return f"expected a whole number from 0 to {maximum}, got {_kind(value)}"
    return f"{value} is out of range; expected 0 to {maximum}"


def _ttl_problem(value: Any) -> str:
    shape = f"a number of seconds from 0.001 to {MAX_TTL_SECONDS}"
    if not isinstance(value, int | float) or isinstance(value, bool):
        return f"expected {shape}, got {_kind(value)}"
    return f"{value} is out of range; expected {shape}"


def _list_problem(value: Any, items: str, limit: int, shape: str) -> str:
    if not isinstance(value, list):
        return f"expected {shape} got {_kind(value)}"
    return f"has {len(value)} {items}; expected 1 to {limit}"


def _value_at(doc: Any, path: str) -> Any:
    """The value a ValidationError path (``.descriptors[0][1].key``) points at."""
    for name, index in _STEP.findall(path):
        doc = doc[int(index)] if index else doc[name]
    return doc


def _join(path: str, name: str) -> str:
    return f"{path.lstrip('.')}.{name}" if path else name


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {int: "a whole number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)
