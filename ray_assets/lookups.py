"""`lookup`: a column mapped through a small code → value table, inside a pyarrow batch function.

The enrichment most pipelines do first (a rate per currency, a region per country code) is a
vectorised dictionary lookup: `values.take(pc.index_in(keys, value_set=codes))`. On a
dictionary-encoded column (`read_parquet_files(dictionary_columns=...)`) that form decodes every
row first and costs more than on plain strings; looking up the column's few distinct values once
and taking by its indices costs a tenth of it. `lookup` picks the right form for either column,
so batch functions need not care how a column was read. It runs on Ray workers: pyarrow only.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def lookup(
    keys: pa.Array | pa.ChunkedArray, codes: pa.Array, values: pa.Array
) -> pa.Array | pa.ChunkedArray:
    """`values[i]` for each key equal to `codes[i]`; null where the key is null or not a code.

    `codes` must hold distinct values (a repeated code would make the answer depend on which
    one is found first); `values` is aligned with it.
    """
    if len(codes) != len(values):
        raise ValueError(
            f"lookup: {len(codes)} codes but {len(values)} values; they must be aligned"
        )
    if isinstance(keys, pa.ChunkedArray):
        return pa.chunked_array(
            [_lookup_array(chunk, codes, values) for chunk in keys.chunks], type=values.type
        )
    return _lookup_array(keys, codes, values)


def _lookup_array(keys: pa.Array, codes: pa.Array, values: pa.Array) -> pa.Array:
    if isinstance(keys, pa.DictionaryArray):
        per_distinct_key = values.take(pc.index_in(keys.dictionary, value_set=codes))
        return per_distinct_key.take(keys.indices)
    return values.take(pc.index_in(keys, value_set=codes))
