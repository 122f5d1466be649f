"""Replay kernels: what one operator or transformer does to Arrow values, for every value kind.

`make_pred(kind, op, constants)` turns a check against constants into a predicate over values
(values -> nullable booleans); `make_pair_pred(kind, op)` compares two aligned arrays (a
`val(...)` or a transformer on the right); the transformer kernels rewrite values (tolower,
basename, b64, the raw time fields). Operator meaning per value kind lives in `analyze.semantics`;
these functions only choose the pyarrow.compute kernel for it. An operator that does not apply to
a kind raises ValueError, which the compiler turns into a RuleError naming the rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from analyze import semantics as sem
from analyze.replay_arrays import FALSE_SCALAR, Pred, int_scalar, py_map

# ---- predicates: operator + constant values -> kernel over values -----------------------------

_CMP: dict[str, Callable[[Any, Any], Any]] = {
    "=": pc.equal, "==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
    ">": pc.greater, ">=": pc.greater_equal,
}
SET_OPS = ("in", "intersects")


def _regex_pred(pattern: str) -> Pred:
    try:
        pc.match_substring_regex(pa.array([""]), pattern=pattern)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return lambda a: pc.match_substring_regex(a, pattern=pattern)


def _string_pred(op: str, consts: list[Any]) -> Pred:
    lit = consts[0] if consts else ""
    if op in _CMP:
        scalar = pa.scalar(lit, pa.string())
        return lambda a: _CMP[op](a, scalar)
    if op in SET_OPS:
        value_set = pa.array([c for c in consts if isinstance(c, str)], pa.string())
        return lambda a: pc.is_in(a, value_set=value_set)
    if op in ("bcontains", "bstartswith"):
        kernel = pc.match_substring if op == "bcontains" else pc.starts_with
        return lambda a: kernel(a.cast(pa.binary()), pattern=lit)
    simple = {"contains": pc.match_substring, "startswith": pc.starts_with,
              "endswith": pc.ends_with}
    if op in simple:
        return lambda a: simple[op](a, pattern=lit)
    bodies = {
        "icontains": lambda: sem.icontains_regex(lit),
        "glob": lambda: sem.glob_regex(lit),
        "iglob": lambda: sem.glob_regex(lit, ignore_case=True),
        "regex": lambda: sem.regex_body(lit),
        "pmatch": lambda: sem.pmatch_regex(consts),
    }
    if op in bodies:
        body = bodies[op]()
        return _regex_pred(body if op == "icontains" else sem.anchored(body))
    raise ValueError(f"operator '{op}' does not apply to strings")


def _number_pred(op: str, consts: list[Any]) -> Pred:
    if op in SET_OPS:
        sets: dict[Any, Any] = {}  # per Arrow type of the values

        def member(a: Any) -> Any:
            if a.type not in sets:
                sets[a.type] = pa.array([c for c in consts if _fits(c, a.type)], a.type)
            return pc.is_in(a, value_set=sets[a.type])

        return member
    if op not in _CMP:
        raise ValueError(f"operator '{op}' does not apply to numbers")
    return lambda a: _compare_number(a, op, consts[0])


def _fits(value: Any, arrow_type: Any) -> bool:
    if not pa.types.is_integer(arrow_type):
        return True
    bits = arrow_type.bit_width
    if pa.types.is_signed_integer(arrow_type):
        return bool(-(1 << (bits - 1)) <= value < 1 << (bits - 1))
    return bool(0 <= value < 1 << bits)


def _compare_number(values: Any, op: str, lit: Any) -> Any:
    if isinstance(lit, float):  # PT_DOUBLE
        return _CMP[op](values.cast(pa.float64()), pa.scalar(lit))
    if _fits(lit, values.type):
        scalar = pa.scalar(lit, values.type) if pa.types.is_integer(values.type) else lit
        return _CMP[op](values, scalar)
    # The literal lies beyond what the column's type holds: the answer is the same for all.
    above = lit > 0
    always = {"=": False, "==": False, "!=": True, "<": above, "<=": above,
              ">": not above, ">=": not above}[op]
    return values.is_valid() if always else pa.repeat(FALSE_SCALAR, len(values))


def _bool_pred(op: str, consts: list[Any]) -> Pred:
    if op in SET_OPS:
        value_set = pa.array(consts, pa.bool_())
        return lambda a: pc.is_in(a, value_set=value_set)
    if op not in ("=", "==", "!="):
        raise ValueError(f"operator '{op}' does not apply to booleans")
    scalar = pa.scalar(consts[0], pa.bool_())
    return lambda a: _CMP[op](a, scalar)


def _ip_pred(op: str, consts: list[Any]) -> Pred:
    if op not in ("=", "==", "!=", *SET_OPS):
        raise ValueError(f"operator '{op}' does not apply to IP addresses")
    wanted = set(consts) if op in SET_OPS else {consts[0]}
    negate = op == "!="

    def test(text: str) -> bool | None:
        ip = sem.ip_of(text)
        return None if ip is None else (ip in wanted) != negate

    return lambda a: py_map(a, test, pa.bool_())


def _net_pred(op: str, consts: list[Any]) -> Pred:
    if op not in ("=", "==", "!=", *SET_OPS):
        raise ValueError(f"operator '{op}' does not apply to IP networks")
    nets = consts if op in SET_OPS else consts[:1]
    negate = op == "!="

    def test(text: str) -> bool | None:
        ip = sem.ip_of(text)
        return None if ip is None else any(ip in net for net in nets) != negate

    return lambda a: py_map(a, test, pa.bool_())


def _bytes_pred(op: str, consts: list[Any]) -> Pred:
    lit = consts[0] if consts else b""
    if op in ("=", "==", "!="):
        scalar = pa.scalar(lit, pa.binary())
        return lambda a: _CMP[op](a, scalar)
    if op in SET_OPS:
        value_set = pa.array(consts, pa.binary())
        return lambda a: pc.is_in(a, value_set=value_set)
    kernels = {"contains": pc.match_substring, "bcontains": pc.match_substring,
               "startswith": pc.starts_with, "bstartswith": pc.starts_with,
               "endswith": pc.ends_with}
    if op not in kernels:
        raise ValueError(f"operator '{op}' does not apply to buffers")
    return lambda a: kernels[op](a, pattern=lit)


def make_pred(kind: str, op: str, consts: list[Any]) -> Pred:
    """The check `<values> op consts` for values of `kind` (semantics.value_kind)."""
    if op == "exists":
        return lambda a: a.is_valid()
    makers = {"number": _number_pred, "reltime": _number_pred, "abstime": _number_pred,
              "port": _number_pred, "bool": _bool_pred, "ip": _ip_pred, "ipnet": _net_pred,
              "bytes": _bytes_pred}
    return makers.get(kind, _string_pred)(op, consts)


# ---- predicates between two operands (`val(...)`, transformers on the right) -------------------

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_PAIR_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "contains": lambda x, y: y in x,
    "bcontains": lambda x, y: y in x,
    "icontains": lambda x, y: y.translate(_ASCII_LOWER) in x.translate(_ASCII_LOWER),
    "startswith": lambda x, y: x.startswith(y),
    "bstartswith": lambda x, y: x.startswith(y),
    "endswith": lambda x, y: x.endswith(y),
    "glob": lambda x, y: sem.glob_match(y, x),
    "iglob": lambda x, y: sem.glob_match(y, x, ignore_case=True),
}


def make_pair_pred(kind: str, op: str) -> Callable[[Any, Any], Any]:
    """A row-by-row comparison of two aligned arrays."""
    if op in SET_OPS:
        op = "="  # one right-hand value per row: membership is equality
    if kind == "ip":
        if op not in ("=", "==", "!="):
            raise ValueError(f"operator '{op}' does not apply to IP addresses")
        return lambda a, b: _CMP[op](_canonical_ips(a), _canonical_ips(b))
    if op in _CMP:
        return lambda a, b: _CMP[op](a, b)
    if op in _PAIR_TESTS:
        test = _PAIR_TESTS[op]
        # No Arrow kernel takes a per-row pattern: Python over the rows (val() is rare).
        return lambda a, b: pa.array([
            None if x is None or y is None else test(x, y)
            for x, y in zip(a.to_pylist(), b.to_pylist(), strict=True)], pa.bool_())
    raise ValueError(f"operator '{op}' does not take a field on its right-hand side")


def _canonical_ips(values: Any) -> Any:
    def canon(text: str) -> str | None:
        ip = sem.ip_of(text)
        return None if ip is None else str(ip)

    return py_map(values, canon, pa.string())


# ---- transformer kernels: values -> values ----------------------------------------------------

SINGLE_TRANSFORMERS = {
    "tolower": pc.ascii_lower,  # libsinsp uses the C locale's tolower: ASCII only
    "toupper": pc.ascii_upper,
    "basename": lambda a: pc.replace_substring_regex(a, pattern="(?s)^.*/", replacement=""),
}
TIME_FIELDS = ("evt.rawtime", "evt.rawtime.s", "evt.rawtime.ns", "evt.time")
_NS = 1_000_000_000


def b64_decoder(ptype: str) -> Callable[[Any], Any]:
    """b64(): bytes for a buffer field, else text cut at the first NUL (semantics.as_charbuf)."""
    if ptype == "PT_BYTEBUF":
        return lambda a: py_map(a, sem.b64_decode, pa.binary())

    def to_text(value: str) -> str | None:
        decoded = sem.b64_decode(value)
        return None if decoded is None else sem.as_charbuf(decoded)

    return lambda a: py_map(a, to_text, pa.string())


def time_field(name: str, times: Any) -> Any:
    """evt.time as HH:MM:SS, evt.rawtime (.s, .ns) as numbers, from the evt.time column."""
    if name == "evt.time":
        # Falco prints local time; we print UTC (a trace does not record the capture's zone).
        return pc.strftime(times, format="%H:%M:%S")
    ns, second = times.cast(pa.int64()), int_scalar(_NS)
    if name == "evt.rawtime.s":
        return pc.divide(ns, second)
    if name == "evt.rawtime.ns":
        return pc.subtract(ns, pc.multiply(pc.divide(ns, second), second))
    return ns
