"""HPACK (RFC 7541): a complete decoder and the few encoder primitives the server needs.

The decoder keeps the dynamic table, honours table size updates (only at the start of a block,
never above the size we advertised), decodes Huffman strings and bounds the decoded header list.
``generation`` changes whenever the dynamic table does, so a caller may cache what a block
decoded to, keyed by its bytes, for as long as the generation stays the same: that is the fast
path for clients (Envoy, nghttp2) that send the same all-indexed block on every request.

The encoder side never uses the peer's dynamic table: every block we send is static-indexed or
literal-without-indexing, so responses can be precomputed once and reused.
"""

from __future__ import annotations

from collections import deque

from sidecar.h2.errors import HPACKError
from sidecar.h2.huffman import huffman_decode, huffman_encode

Header = tuple[bytes, bytes]
HeaderList = list[Header]

ENTRY_OVERHEAD = 32  # RFC 7541 section 4.1
DEFAULT_TABLE_SIZE = 4096
MAX_INTEGER = 1 << 32  # larger values can only be hostile: no size or index is that big

STATIC_TABLE: tuple[Header, ...] = tuple(
    (n.encode(), v.encode())
    for n, v in (
        (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
        (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
        (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
        (":status", "404"), (":status", "500"), ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
        ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
        ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
        ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
        ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
        ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
        ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
        ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
        ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
        ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
        ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
        ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
    )
)
STATIC_COUNT = len(STATIC_TABLE)  # 61; index 0 is invalid, 1..61 static, 62.. dynamic
_STATIC_BY_INDEX: tuple[Header, ...] = (b"", b""), *STATIC_TABLE
_STATIC_NAME_INDEX: dict[bytes, int] = {}
for _i, (_name, _) in enumerate(STATIC_TABLE, 1):
    _STATIC_NAME_INDEX.setdefault(_name, _i)
_STATIC_FIELD_INDEX = {field: i for i, field in enumerate(STATIC_TABLE, 1)}


class Decoder:
    """One connection's HPACK decoding context."""

    def __init__(self, max_table_size: int = DEFAULT_TABLE_SIZE,
                 max_header_list_size: int = 16384) -> None:
        self.settings_table_size = max_table_size  # what we advertised: the update ceiling
        self.max_table_size = max_table_size  # the encoder's current choice
        self.max_header_list_size = max_header_list_size
        self.table_size = 0
        self.generation = 0
        self._dynamic: deque[Header] = deque()  # newest first: index 62 is _dynamic[0]

    def decode(self, block: bytes) -> tuple[HeaderList, bool]:
        """(headers, too_large). Past max_header_list_size the rest of the block is still
        decoded, to keep the table in step, but its fields are dropped and too_large is set."""
        headers: HeaderList = []
        pos, end = 0, len(block)
        list_size, limit = 0, self.max_header_list_size
        at_start = True
        while pos < end:
            first = block[pos]
            if first & 0x80:
                index, pos = _integer(block, pos, 0x7F)
                field = self._field(index)
            elif first & 0x40:
                field, pos = self._literal(block, pos, 0x3F)
                self._insert(field)
            elif first & 0x20:
                if not at_start:
                    raise HPACKError("dynamic table size update after a header field")
                size, pos = _integer(block, pos, 0x1F)
                self._resize(size)
                continue
            else:
                field, pos = self._literal(block, pos, 0x0F)
            at_start = False
            list_size += len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
            if list_size <= limit:
                headers.append(field)
        return headers, list_size > limit

    def _field(self, index: int) -> Header:
        if index <= STATIC_COUNT:
            if index == 0:
                raise HPACKError("indexed header field with index 0")
            return _STATIC_BY_INDEX[index]
        try:
            return self._dynamic[index - STATIC_COUNT - 1]
        except IndexError:
            raise HPACKError(f"header index {index} is past the end of the tables") from None

    def _literal(self, block: bytes, pos: int, mask: int) -> tuple[Header, int]:
        index, pos = _integer(block, pos, mask)
        if index:
            name = self._field(index)[0]
        else:
            name, pos = _string(block, pos)
        value, pos = _string(block, pos)
        return (name, value), pos

    def _insert(self, field: Header) -> None:
        self.generation += 1
        size = len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
        if size > self.max_table_size:  # RFC 7541 4.4: an oversize entry empties the table
            self._dynamic.clear()
            self.table_size = 0
            return
        self._dynamic.appendleft(field)
        self.table_size += size
        self._evict()

    def _resize(self, size: int) -> None:
        if size > self.settings_table_size:
            raise HPACKError(f"dynamic table size update to {size} exceeds the "
                             f"{self.settings_table_size} we allow")
        self.generation += 1
        self.max_table_size = size
        self._evict()

    def _evict(self) -> None:
        table = self._dynamic
        while self.table_size > self.max_table_size:
            name, value = table.pop()
            self.table_size -= len(name) + len(value) + ENTRY_OVERHEAD


def _integer(data: bytes, pos: int, mask: int) -> tuple[int, int]:
    """An N-bit prefix integer starting at data[pos] (RFC 7541 5.1) and the next position."""
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift, end = 0, len(data)
    while True:
        if pos >= end:
            raise HPACKError("header block ends inside an integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            if value >= MAX_INTEGER:
                raise HPACKError("integer too large")
            return value, pos
        shift += 7
        if shift > 28:  # 5 continuation bytes carry 35 bits: more is padding or an attack
            raise HPACKError("integer too large")


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(data):
        raise HPACKError("header block ends before a string literal")
    huffman = data[pos] & 0x80
    length, pos = _integer(data, pos, 0x7F)
    end = pos + length
    if end > len(data):
        raise HPACKError("string literal runs past the end of the header block")
    raw = data[pos:end]
    return (huffman_decode(raw) if huffman else raw), end


# -- encoding (precomputed blocks only) ----------------------------------------------------------


def encode_integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """``value`` with an N-bit prefix; ``first`` holds the representation's high bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_string(value: bytes, huffman: bool = False) -> bytes:
    if huffman:
        value = huffman_encode(value)
    return encode_integer(len(value), 7, 0x80 if huffman else 0) + value


def encode_literal(name: bytes, value: bytes, huffman: bool = False) -> bytes:
    """A field that never touches either dynamic table: static index when the whole field is
    in the static table, else literal without indexing (name indexed when it can be)."""
    index = _STATIC_FIELD_INDEX.get((name, value))
    if index is not None:
        return encode_integer(index, 7, 0x80)
    name_index = _STATIC_NAME_INDEX.get(name, 0)
    head = encode_integer(name_index, 4, 0x00)
    if not name_index:
        head += encode_string(name, huffman)
    return head + encode_string(value, huffman)


def encode_block(headers: HeaderList, huffman: bool = False) -> bytes:
    return b"".join(encode_literal(n, v, huffman) for n, v in headers)


def encode_table_size_update(size: int) -> bytes:
    return encode_integer(size, 5, 0x20)
