"""The bridge's JSON reader (execwatch._json: orjson, and Python's json where orjson refuses)
against Python's json, which the workspace server reads a person's messages with: a message
both read must hold the same strings, keys and shapes, or the bridge would record code that
is not what runs. Generated texts with every escape, duplicate keys, lone surrogates, numbers
of every size, NaN and Infinity, bytes that are not UTF-8, and nesting past orjson's limit."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dossierhub.workspaces import execwatch

I64 = (-(2**63), 2**64 - 1)  # what orjson reads as an integer (past it: a float)


def as_the_kernel_reads(value: Any) -> Any:
    """Python json's value with integers past 64 bits as floats (as orjson, and so the
    kernel's Session, reads them); floats and NaN as their repr, to compare."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if I64[0] <= value <= I64[1] else repr(float(value))
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, list):
        return [as_the_kernel_reads(item) for item in value]
    return [(key, as_the_kernel_reads(item)) for key, item in value.items()]


characters = st.characters(codec=None, exclude_categories=())  # lone surrogates too


@st.composite
def json_string(draw: st.DrawFn) -> str:
    """A JSON string, each character raw or escaped (\\uXXXX, or its short escape)."""
    out = ['"']
    for char in draw(st.text(characters, max_size=12)):
        short = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "/": "\\/", "\b": "\\b"}
        if char in short or ord(char) < 0x20 or 0xD800 <= ord(char) <= 0xDFFF:
            raw = False  # must be escaped (a raw surrogate cannot be encoded at all)
        else:
            raw = draw(st.booleans())
        if raw:
            out.append(char)
        elif char in short and draw(st.booleans()):
            out.append(short[char])
        elif ord(char) > 0xFFFF:  # a pair
            high, low = divmod(ord(char) - 0x10000, 0x400)
            out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04X}")
        else:
            out.append(f"\\u{ord(char):04x}")
    out.append('"')
    return "".join(out)


numbers = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "-0.0", "1E2", "1e-400"]),
    st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
)
space = st.sampled_from(["", " ", "\n", "\t", "\r\n  "])
modes = st.sampled_from(["strict", "replace"])  # a text frame's decoding, a v1 part's


def json_text(depth: int = 3) -> st.SearchStrategy[str]:
    leaves = st.one_of(json_string(), numbers, st.sampled_from(["true", "false", "null"]))
    if depth == 0:
        return leaves
    inner = json_text(depth - 1)
    arrays = st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
    # keys may repeat: both readers keep the last value
    keys = st.one_of(json_string(), st.sampled_from(['"code"', '"c\\u006fde"']))
    objects = st.lists(st.tuples(keys, space, inner), max_size=4).map(
        lambda pairs: "{" + ",".join(f"{k}{s}:{s}{v}" for k, s, v in pairs) + "}"
    )
    return st.one_of(leaves, arrays, objects)


def python_reads(data: bytes, errors: str) -> Any:
    try:
        return ("ok", as_the_kernel_reads(json.loads(data.decode("utf-8", errors))))
    except (ValueError, RecursionError) as exc:
        return ("refused", type(exc).__name__)


def bridge_reads(data: bytes, errors: str) -> Any:
    try:
        return ("ok", as_the_kernel_reads(execwatch._json(data, errors)))
    except (ValueError, RecursionError) as exc:
        return ("refused", type(exc).__name__)


@settings(max_examples=1500, deadline=None)
@given(json_text(), space, space, modes)
def test_the_bridge_reads_every_text_as_pythons_json(text, before, after, errors):
    data = (before + text + after).encode("utf-8")
    assert bridge_reads(data, errors) == python_reads(data, errors)


@settings(max_examples=1500, deadline=None)
@given(
    json_text(),
    st.binary(max_size=3),
    st.integers(min_value=0),
    st.sampled_from(["strict", "replace"]),
)
def test_bytes_cut_or_spliced_are_read_or_refused_alike(text, junk, at, errors):
    """Bytes that are no UTF-8 or no JSON (a byte spliced in anywhere, a text cut short):
    both read the same or both refuse."""
    data = text.encode("utf-8")
    at %= len(data) + 1
    for changed in (data[:at] + junk + data[at:], data[:at]):
        assert bridge_reads(changed, errors) == python_reads(changed, errors)


@pytest.mark.parametrize(
    "text",
    [
        '{"code": "pass", "code": "import os"}',  # the last one counts, in both
        '{"code": "pass", "c\\u006fde": "import os"}',
        '"\\ud800"',  # a lone surrogate: orjson refuses, json reads it
        "[1e400, NaN, -Infinity]",
        "123456789012345678901234567890",
        "[" * 2000 + "]" * 2000,  # past both limits
        "[" * 1100 + "]" * 1100,  # past orjson's: json reads it
        "\ufeff{}",  # a byte order mark: both refuse
        '{"a": "\x7f"}',
    ],
)
def test_texts_where_the_readers_could_part(text):
    data = text.encode("utf-8")
    for errors in ("strict", "replace"):
        assert bridge_reads(data, errors) == python_reads(data, errors)
    if text.startswith('{"code"'):
        assert execwatch._json(data)["code"] == "import os"


def test_nan_stays_nan():
    (value,) = execwatch._json(b"[NaN]")
    assert math.isnan(value)
