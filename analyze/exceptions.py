"""Rule exceptions: decoding them, validating them, and the condition text Falco builds from them.

Falco turns exceptions into condition *text* (rule_loader_compiler.cpp,
build_rule_exception_infos) and parses the result with the rule, after list substitution. We
rebuild that text byte for byte, quirks included, so the compiled condition is the same:
- the rule condition becomes `(<cond>)`, then `and not <exc>` for each exception with values;
- a value is quoted only when it contains a space and does not already start with a quote, and
  nothing is escaped (Falco's `quote_item`);
- for a list comparison (`in`, `intersects`, `pmatch`) a scalar value is wrapped in parentheses
  instead, so a value naming a list (`cat_cmdlines` or `(cat_cmdlines)`) is substituted later;
- multi-field tuples are written `( f1 = v1 and  f2 = v2)` (the doubled blank is Falco's).
"""

from __future__ import annotations

from collections.abc import Callable

from analyze import ast
from analyze.errors import RuleLoadError, SourceRef
from analyze.ruleset import Diagnostics, Entry, RuleException, entry_is_valid
from analyze.yaml_source import YMap, YNode, YScalar, YSeq, get_str, is_null

LIST_COMPS = ("in", "pmatch", "intersects")

FieldCheck = Callable[[str], bool]


def _fail(message: str, source: SourceRef) -> RuleLoadError:
    return RuleLoadError(message, source=source, code="validate")


# ---- decoding (rule_loader_reader.cpp, read_rule_exceptions) -----------------------------------


def read_exceptions(
    node: YNode | None, rule_ref: SourceRef, diag: Diagnostics, *, fields_optional: bool,
) -> list[RuleException]:
    """The `exceptions` of a rule item; `fields` may be omitted when appending values."""
    if node is None or is_null(node):
        return []
    at = _at(rule_ref, node, rule_ref.item)
    if not isinstance(node, YSeq):
        raise RuleLoadError("Rule exceptions must be a sequence", source=at, code="yaml-validate")
    out: list[RuleException] = []
    for ex in node.items:
        out.append(_read_one(ex, rule_ref, diag, out, fields_optional=fields_optional))
    return out


def _read_one(
    ex: YNode, rule_ref: SourceRef, diag: Diagnostics, previous: list[RuleException],
    *, fields_optional: bool,
) -> RuleException:
    tmp = _at(rule_ref, ex, f"exception of {rule_ref.item}")
    if not isinstance(ex, YMap):
        raise RuleLoadError("Rule exception must be a mapping", source=tmp, code="yaml-validate")
    name = get_str(ex, "name", tmp)
    ref = _at(rule_ref, ex, f"exception '{name}' of {rule_ref.item}")
    if any(prev.name == name for prev in previous):
        raise RuleLoadError("Exceptions names in the same object must be unique", source=ref,
                            code="yaml-validate")
    fields = _entry_for_key(ex, "fields", ref, optional=fields_optional)
    comps = _entry_for_key(ex, "comps", ref, optional=True)
    values: list[Entry] = []
    vals = ex.get("values")
    if vals is not None:
        if not isinstance(vals, YSeq):
            raise RuleLoadError("Rule exception values must be a sequence",
                                source=_at(ref, vals, ref.item), code="yaml-validate")
        values = [_entry(v, ref) for v in vals.items]
    elif fields_optional:
        diag.warn("append-no-values", "Overriding/appending exception with no values", ref)
    for key in ex.key_nodes():
        if key.text not in ("name", "fields", "comps", "values"):
            diag.warn("unknown-key", f"Unknown key '{key.text}' in exception: ignored",
                      _at(ref, key, ref.item))
    return RuleException(name, fields, comps, tuple(values), ref)


def _entry_for_key(ex: YMap, key: str, ref: SourceRef, *, optional: bool) -> Entry | None:
    node = ex.get(key)
    if node is None:
        if optional:
            return None
        raise RuleLoadError(f"Item has no mapping for key '{key}'", source=ref,
                            code="yaml-validate")
    return _entry(node, ref)


def _entry(node: YNode, ref: SourceRef) -> Entry:
    """A scalar or a (nested) list; null and mappings give Falco's empty, invalid entry."""
    if isinstance(node, YScalar):
        if node.null:
            return ""
        if node.text == "":
            raise RuleLoadError("Value must be non-empty", source=_at(ref, node, ref.item),
                                code="yaml-validate")
        return node.text
    if isinstance(node, YSeq):
        return tuple(_entry(v, ref) for v in node.items)
    return ""


def _at(ref: SourceRef, node: YNode, item: str) -> SourceRef:
    return SourceRef(ref.path, node.line, node.col, item)


# ---- validation (rule_loader_collector.cpp, validate_exception_info) ---------------------------


def validate_exception(ex: RuleException, field_exists: FieldCheck | None) -> RuleException:
    """Check comps and fields and fill in the default comps (`=` per field, or `in`)."""
    fields = ex.fields
    if fields is None or not entry_is_valid(fields):
        raise _fail("Rule exception must have fields property with a list of fields", ex.origin)
    if isinstance(fields, tuple):
        comps = ex.comps if entry_is_valid(ex.comps) else ("=",) * len(fields)
        comp_items = comps if isinstance(comps, tuple) else ()
        if len(fields) != len(comp_items):
            raise _fail("Fields and comps lists must have equal length", ex.origin)
        for comp in comp_items:
            op = comp if isinstance(comp, str) else ""
            if op not in ast.OPERATORS:
                raise _fail(f"'{op}' is not a supported comparison operator", ex.origin)
        for f in fields:
            _check_field(f if isinstance(f, str) else "", field_exists, ex.origin)
    else:
        comps = ex.comps if entry_is_valid(ex.comps) else "in"
        if isinstance(comps, tuple):
            raise _fail("Fields and comps must both be strings", ex.origin)
        if comps not in LIST_COMPS:
            raise _fail("When fields is a single value, comps must be one of "
                        "(in, pmatch, intersects)", ex.origin)
        _check_field(fields, field_exists, ex.origin)
    return RuleException(ex.name, fields, comps, ex.values, ex.origin)


def _check_field(name: str, field_exists: FieldCheck | None, origin: SourceRef) -> None:
    if field_exists is not None and not field_exists(name):
        raise _fail(f"'{name}' is not a supported filter field", origin)


# ---- condition text (rule_loader_compiler.cpp, build_rule_exception_infos) ---------------------


def quote_item(value: str) -> str:
    """Falco's quote_item: quote a value holding a space unless it already starts with a quote."""
    if " " in value and value[:1] not in ('"', "'"):
        return f'"{value}"'
    return value


def paren_item(value: str) -> str:
    return value if value.startswith("(") else f"({value})"


def build_condition(condition: str, exceptions: list[RuleException] | tuple[RuleException, ...]
                    ) -> str:
    """`(<condition>) and not <exc1> and not <exc2>`, skipping exceptions without values."""
    out = f"({condition})"
    for ex in exceptions:
        text = _single_field_text(ex) if isinstance(ex.fields, str) else _tuple_text(ex)
        if text:
            out += " and not " + text
    return out


def _single_field_text(ex: RuleException) -> str:
    text = ""
    for value in ex.values:
        if not isinstance(value, str):
            raise _fail("Expected values array to contain a list of strings", ex.origin)
        text += f"({ex.fields} {ex.comps} (" if not text else ", "
        text += quote_item(value)
    return text + "))" if text else ""


def _tuple_text(ex: RuleException) -> str:
    fields = ex.fields if isinstance(ex.fields, tuple) else ()
    comps = ex.comps if isinstance(ex.comps, tuple) else ()
    text = "("
    for values in ex.values:
        items = values if isinstance(values, tuple) else ()
        if len(fields) != len(items):
            raise _fail("Fields and values lists must have equal length", ex.origin)
        text += "" if text == "(" else " or "
        text += "("
        for k, (fld, comp, value) in enumerate(zip(fields, comps, items, strict=True)):
            text += "" if k == 0 else " and "
            text += f" {_str(fld)} {_str(comp)} {_value_text(value, _str(comp))}"
        text += ")"
    text += ")"
    return "" if text == "()" else text


def _value_text(value: Entry, comp: str) -> str:
    if isinstance(value, tuple):
        out = "("
        for v in value:
            out += "" if out == "(" else ", "  # Falco's test: an empty first item eats a comma
            out += quote_item(_str(v))
        return out + ")"
    return paren_item(value) if comp in LIST_COMPS else quote_item(value)


def _str(entry: Entry) -> str:
    """The scalar of an entry (Falco reads `.item`, which is empty for a list entry)."""
    return entry if isinstance(entry, str) else ""
