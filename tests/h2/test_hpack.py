"""HPACK (RFC 7541): the decoder against the RFC's examples, against the reference `hpack`
library's encoder (Huffman, dynamic table, size updates, never-indexed fields), and on every
kind of invalid input. The decoder is our own; `hpack` is only the reference here."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.h2.errors import HPACKError
from sidecar.h2.hpack import (
    Decoder,
    encode_block,
    encode_integer,
    encode_literal,
    encode_table_size_update,
)
from sidecar.h2.huffman import huffman_decode, huffman_encode
from sidecar.h2.request import HeadCache, Router


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def fields(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(n.encode(), v.encode()) for n, v in pairs]


REQUESTS = [
    fields((":method", "GET"), (":scheme", "http"), (":path", "/"),
           (":authority", "www.example.com")),
    fields((":method", "GET"), (":scheme", "http"), (":path", "/"),
           (":authority", "www.example.com"), ("cache-control", "no-cache")),
    fields((":method", "GET"), (":scheme", "https"), (":path", "/index.html"),
           (":authority", "www.example.com"), ("custom-key", "custom-value")),
]


@pytest.mark.parametrize("blocks", [
    # RFC 7541 C.3: requests without Huffman coding.
    ["828684410f7777772e6578616d706c652e636f6d", "828684be58086e6f2d6361636865",
     "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"],
    # RFC 7541 C.4: the same requests with Huffman coding.
    ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf",
     "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"],
], ids=["C.3", "C.4"])
def test_rfc7541_request_examples(blocks: list[str]) -> None:
    decoder = Decoder()
    for block, expected in zip(blocks, REQUESTS, strict=True):
        headers, too_large = decoder.decode(h(block))
        assert headers == expected and not too_large
    assert decoder.table_size == 164


def test_rfc7541_response_examples_evict() -> None:
    # RFC 7541 C.5: responses with a 256-byte table, so entries are evicted.
    decoder = Decoder(max_table_size=256)
    blocks = [
        "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a3231"
        "20474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
        "4803333037c1c0bf",
        "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a6970"
        "7738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167"
        "653d333630303b2076657273696f6e3d31",
    ]
    for block in blocks:
        headers, _ = decoder.decode(h(block))
    assert headers[0] == (b":status", b"200")
    assert headers[-1] == (b"set-cookie",
                           b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")
    assert decoder.table_size == 215


# -- against the reference encoder --------------------------------------------------------------

NAMES = st.sampled_from(["content-type", "x-request-id", "grpc-timeout", "user-agent",
                         ":authority", "cookie", "x-custom", "te", "accept-encoding"])
VALUES = st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)), max_size=80)
HEADER = st.tuples(NAMES | st.from_regex(r"[a-z][a-z0-9\-]{0,30}", fullmatch=True), VALUES,
                   st.booleans())
BLOCK = st.lists(HEADER, max_size=12)


@settings(max_examples=200, deadline=None)
@given(blocks=st.lists(st.tuples(BLOCK, st.booleans(), st.sampled_from([None, 0, 64, 4096])),
                       min_size=1, max_size=8))
def test_round_trip_with_the_reference_encoder(
        blocks: list[tuple[list[tuple[str, str, bool]], bool, int | None]]) -> None:
    encoder = hpack.Encoder()
    decoder = Decoder()
    reference = hpack.Decoder()
    for headers, huffman, table_size in blocks:
        if table_size is not None:
            encoder.header_table_size = table_size  # emits a size update in the next block
        tuples = [hpack.HeaderTuple(n, v) if not sensitive else hpack.NeverIndexedHeaderTuple(n, v)
                  for n, v, sensitive in headers]
        block = encoder.encode(tuples, huffman=huffman)
        decoded, too_large = decoder.decode(block)
        assert not too_large
        assert decoded == [(n.encode(), v.encode()) for n, v, _ in headers]
        reference.decode(block)
        assert list(decoder._dynamic) == list(reference.header_table.dynamic_entries)
        assert decoder.table_size == reference.header_table._current_size


def test_generation_changes_only_with_the_table() -> None:
    encoder, decoder = hpack.Encoder(), Decoder()
    first = encoder.encode([(":path", "/a"), ("x-id", "1")])
    decoder.decode(first)
    generation = decoder.generation
    again = encoder.encode([(":path", "/a"), ("x-id", "1")])  # all indexed now
    assert all(b & 0x80 for b in again)
    decoder.decode(again)
    assert decoder.generation == generation
    decoder.decode(encoder.encode([("x-id", "2")]))
    assert decoder.generation > generation


def test_our_encoded_blocks_decode_with_the_reference() -> None:
    block = encode_block(fields((":status", "200"), ("content-type", "application/grpc"),
                                ("grpc-status", "0"), ("grpc-message", "x" * 300)))
    assert hpack.Decoder().decode(block) == [
        (":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "0"),
        ("grpc-message", "x" * 300)]
    huffman = encode_literal(b"x-huff", b"hello world", huffman=True)
    assert hpack.Decoder().decode(huffman) == [("x-huff", "hello world")]
    reference = hpack.Decoder()
    reference.decode(encode_table_size_update(0))
    assert reference.header_table.maxsize == 0


@given(st.binary(max_size=300))
def test_huffman_round_trip(data: bytes) -> None:
    encoded = huffman_encode(data)
    assert huffman_decode(encoded) == data
    assert encoded == hpack.huffman.HuffmanEncoder(
        hpack.huffman_constants.REQUEST_CODES,
        hpack.huffman_constants.REQUEST_CODES_LENGTH).encode(data)


@given(st.integers(0, (1 << 32) - 1), st.integers(1, 8))
def test_integer_round_trip(value: int, prefix: int) -> None:
    decoder = Decoder()
    # An indexed field's index is a 7-bit-prefix integer: check the shared integer code.
    encoded = encode_integer(value, prefix)
    if prefix == 7 and value == 0:
        return
    assert hpack.hpack.decode_integer(encoded, prefix)[0] == value
    if prefix == 5 and value <= decoder.settings_table_size:
        decoder.decode(bytes((0x20 | encoded[0],)) + encoded[1:])
        assert decoder.max_table_size == value


# -- limits and invalid input --------------------------------------------------------------------


def test_header_list_size_limit_still_tracks_the_table() -> None:
    encoder = hpack.Encoder()
    decoder = Decoder(max_header_list_size=100)
    big = [("x-a", "a" * 60), ("x-b", "b" * 60)]
    headers, too_large = decoder.decode(encoder.encode(big))
    assert too_large and headers == [(b"x-a", b"a" * 60)]
    headers, too_large = decoder.decode(encoder.encode([("x-b", "b" * 60)]))  # now indexed
    assert headers == [(b"x-b", b"b" * 60)] and not too_large


def test_oversize_entry_empties_the_table() -> None:
    decoder = Decoder(max_table_size=100)
    decoder.decode(encode_integer(0, 6, 0x40) + b"\x01a\x01b")
    assert decoder.table_size == 34
    decoder.decode(encode_integer(0, 6, 0x40) + b"\x01a\x7f\x32" + b"v" * 177)
    assert decoder.table_size == 0 and not decoder._dynamic


@pytest.mark.parametrize(("block", "problem"), [
    ("80", "index 0"),
    ("be", "past the end"),
    ("ff80808080808080", "integer too large"),
    ("ff", "ends inside an integer"),
    ("40", "ends before a string"),
    ("4005", "runs past the end"),
    ("400a61", "runs past the end"),
    ("3fe21f", "exceeds"),  # size update to 4097
    ("8220", "after a header field"),
    ("4084ffffffff", "EOS"),  # a Huffman string holding EOS (30 ones)
    ("4081" + "00", "padding"),  # Huffman: zero padding
    ("4082" + "ffff", "padding"),  # Huffman: more than 7 bits of padding
])
def test_invalid_blocks_raise_hpack_error(block: str, problem: str) -> None:
    with pytest.raises(HPACKError) as info:
        Decoder().decode(h(block) + (b"\x01x" if block.startswith("408") else b""))
    assert info.value.code == 9
    assert problem in str(info.value)


def test_head_cache_skips_decoding_repeated_all_indexed_blocks() -> None:
    calls = []

    class CountingDecoder(Decoder):
        def decode(self, block: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
            calls.append(block)
            return super().decode(block)

    async def handler(message: bytes) -> bytes:
        return message

    cache = HeadCache(CountingDecoder(), Router({b"/s/M": handler}))
    encoder = hpack.Encoder()
    headers = [(":method", "POST"), (":scheme", "http"), (":path", "/s/M"),
               (":authority", "a"), ("content-type", "application/grpc")]
    first = cache.head(encoder.encode(headers))  # literals with indexing: table changes
    indexed = encoder.encode(headers)
    second = cache.head(indexed)
    third = cache.head(indexed)  # same bytes, same table: no decoding
    assert first == second == third and third.handler is handler
    assert len(calls) == 2
    cache.head(encoder.encode([*headers, ("x-new", "1")]))  # inserts: the cache starts over
    cache.head(indexed)
    assert len(calls) == 4
