"""Arrow helpers of the replay engine: dictionaries, lists and masks, never Python per row.

String columns are Arrow dictionaries, so a computation over their *dictionary* (distinct values)
runs once per batch and maps to rows with one `take` (`apply`, `derive`, `py_map`). Multi-valued
fields are list arrays: `list_parts` splits one into elements and offsets, a check runs on the
elements, and `reduce_lists` folds the element results back into one boolean per row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from analyze.replay import View

Mask = Any  # a pa.BooleanArray without nulls, one entry per row of the view
Pred = Callable[[Any], Any]  # values -> nullable booleans (one per value)

# Arrow scalars made once: handing kernels Python values costs a conversion (and, in pyarrow,
# a failed optional import) on every call.
FALSE_SCALAR, TRUE_SCALAR = pa.scalar(False), pa.scalar(True)
EMPTY_STRING = pa.scalar("", pa.string())
_ZERO = pa.array([0], pa.int64())


def fill(mask: Any) -> Mask:
    """Nulls (a value that could not be extracted) become False: Falco's two-valued logic."""
    return mask if mask.null_count == 0 else pc.fill_null(mask, FALSE_SCALAR)


def plain(values: Any) -> Any:
    """Values without dictionary encoding (for row-by-row kernels)."""
    return values.dictionary_decode() if isinstance(values, pa.DictionaryArray) else values


def valid(values: Any) -> Mask:
    """Which values exist (a derived dictionary may hold nulls, not only its indices)."""
    if isinstance(values, pa.DictionaryArray):
        return fill(values.dictionary.is_valid().take(values.indices))
    return values.is_valid()


def apply(view: View, values: Any, pred: Pred, key: str) -> Any:
    """`pred` over values; on a dictionary, once per batch (cached under `key`) then mapped."""
    if isinstance(values, pa.DictionaryArray):
        mask = view.frame.cached(("pred", key), lambda: pred(values.dictionary))
        return mask.take(values.indices)
    return pred(values)


def derive(view: View, source: Any, key: str, fn: Callable[[Any], Any]) -> Any:
    """`fn` (values -> as many values) over a dictionary once per batch, else over the rows."""
    if isinstance(source, pa.DictionaryArray):
        dictionary = view.frame.cached(("dict", key), lambda: fn(source.dictionary))
        return pa.DictionaryArray.from_arrays(source.indices, dictionary, safe=False)
    return fn(source)


def py_map(values: Any, fn: Callable[[Any], Any], out_type: Any) -> Any:
    """Python `fn` over distinct values only (used for per-value logic Arrow has no kernel for)."""
    if not isinstance(values, pa.DictionaryArray):
        values = pc.dictionary_encode(values)
    mapped = [None if v is None else fn(v) for v in values.dictionary.to_pylist()]
    return pa.array(mapped, out_type).take(values.indices)


def list_parts(lst: Any) -> tuple[Any, Any]:
    """A list array's element values and offsets into them (starting at 0)."""
    offsets = lst.offsets
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    values = lst.values.slice(first, last - first)
    return values, (pc.subtract(offsets, int_scalar(first, offsets)) if first else offsets)


def parents(offsets: Any) -> Any:
    """The row each list element belongs to."""
    values = pa.nulls(offsets[-1].as_py(), pa.int8())
    return pc.list_parent_indices(pa.ListArray.from_arrays(offsets, values))


def reduce_lists(lst: Any, element_mask: Any, offsets: Any, mode: str,
                 skip_first: bool) -> Mask:
    """Per row: any / all / exactly one of the elements (from index 1 for ancestors) hold."""
    starts, ends = offsets.slice(0, len(offsets) - 1), offsets.slice(1)
    if skip_first:
        starts = pc.min_element_wise(pc.add(starts, int_scalar(1, starts)), ends)
    sums = pc.cumulative_sum(element_mask.cast(pa.int64()))
    sums = pa.concat_arrays([_ZERO, sums])
    hits = pc.subtract(sums.take(ends), sums.take(starts))
    if mode == "anyof":
        result = pc.greater(hits, int_scalar(0, hits))
    elif mode == "oneof":
        result = pc.equal(hits, int_scalar(1, hits))
    else:  # allof: every element, and at least one
        sizes = pc.subtract(ends, starts)
        result = pc.and_(pc.equal(hits, sizes), pc.greater(sizes, int_scalar(0, sizes)))
    return fill(pc.and_(result, lst.is_valid()))


def element(lst: Any, index: int) -> Any:
    """Element `index` of each list (null when the list is shorter)."""
    values, offsets = list_parts(lst)
    starts, ends = offsets.slice(0, len(offsets) - 1), offsets.slice(1)
    pos = pc.add(starts, int_scalar(index, starts))
    ok = fill(pc.and_(pc.less(pos, ends), lst.is_valid()))
    return values.take(pc.if_else(ok, pos, pa.scalar(None, pos.type)))


def rows_to_lists(arrays: Sequence[Any], n: int) -> Any:
    """One list per row from k same-length arrays, nulls left out."""
    k = len(arrays)
    flat = pa.concat_arrays([a.cast(pa.string()) for a in arrays])  # column-major
    j = pc.subtract(pc.cumulative_sum(pa.repeat(int_scalar(1), n * k)), int_scalar(1))
    source = pc.add(pc.multiply(pc.remainder(j, int_scalar(k)), int_scalar(n)),
                    pc.divide(j, int_scalar(k)))
    values = flat.take(source)
    lengths = pa.repeat(pa.scalar(0, pa.int32()), n)
    for a in arrays:
        lengths = pc.add(lengths, a.is_valid().cast(pa.int32()))
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum(lengths)])
    return pa.ListArray.from_arrays(offsets, values.filter(values.is_valid()))


def repeat(value: Any, view: View) -> Any:
    return pa.repeat(value, view.length)


def int_scalar(value: int, like: Any = None) -> Any:
    """An integer scalar of `like`'s type (int64 by default)."""
    return pa.scalar(value, pa.int64() if like is None else like.type)
