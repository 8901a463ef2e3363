"""lookup: a column mapped through a small code -> value table, plain or dictionary-encoded."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ray_assets import lookup

CODES = pa.array(["EUR", "USD", "GBP"])
RATES = pa.array([1.1, 1.0, 1.3])


def _naive(keys: list[str | None]) -> list[float | None]:
    rate_of = dict(zip(CODES.to_pylist(), RATES.to_pylist(), strict=True))
    return [rate_of.get(key) for key in keys]


KEYS = ["USD", "EUR", None, "CHF", "GBP", "USD"]


def test_plain_keys() -> None:
    assert lookup(pa.array(KEYS), CODES, RATES).to_pylist() == _naive(KEYS)


def test_dictionary_keys_give_the_same_values() -> None:
    encoded = pa.array(KEYS).dictionary_encode()
    assert isinstance(encoded, pa.DictionaryArray)
    got = lookup(encoded, CODES, RATES)
    assert got.type == pa.float64() and got.to_pylist() == _naive(KEYS)


def test_chunks_with_different_dictionaries() -> None:
    chunks = [pa.array(KEYS[:3]).dictionary_encode(), pa.array(KEYS[3:]).dictionary_encode()]
    got = lookup(pa.chunked_array(chunks), CODES, RATES)
    assert isinstance(got, pa.ChunkedArray) and got.to_pylist() == _naive(KEYS)
    assert got.to_pylist() == RATES.take(pc.index_in(pa.array(KEYS), value_set=CODES)).to_pylist()


def test_misaligned_codes_and_values_are_refused() -> None:
    with pytest.raises(ValueError, match="3 codes but 2 values"):
        lookup(pa.array(KEYS), CODES, RATES.slice(1))
