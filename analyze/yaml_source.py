"""Reading rule files as YAML the way Falco's yaml-cpp sees them, with line/column on every node.

Falco reads rule files with yaml-cpp, which keeps every scalar as text and converts it only when a
key is decoded (`enabled` as a bool, `required_engine_version` as an integer, list items as
strings). PyYAML instead resolves scalars while constructing (`0755` becomes 493, `yes` becomes
True) and refuses some of what Falco accepts: `comps: [=]` (a bare `=` is YAML's "value" key
token) and `desc: != ...` (`!=` reads as a tag). So we stop at PyYAML's *composer*: it gives nodes
with their raw text, style, tag and marks, and no constructor ever runs. This module turns those
nodes into a small tree (`YScalar`, `YSeq`, `YMap`) and offers yaml-cpp's decoding rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

import yaml

from analyze.errors import RuleLoadError, SourceRef

_NULL_TAG = "tag:yaml.org,2002:null"
_STD_TAG_PREFIX = "tag:yaml.org,2002:"

# yaml-cpp's convert<bool>: these words, in all-lower, all-upper or Capitalised spelling.
_TRUE_WORDS = ("y", "yes", "true", "on")
_FALSE_WORDS = ("n", "no", "false", "off")
# yaml-cpp's convert<unsigned>: stream extraction with the base taken from the prefix.
_RE_UINT = re.compile(r"\s*\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\s*")

try:  # the C composer is ~10x faster on the 150 KB legacy rules file; marks are identical
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass(frozen=True)
class YScalar:
    """A scalar as written: raw text, whether it was plain (unquoted), and any explicit tag."""

    value: str
    line: int
    col: int
    plain: bool = True
    tag: str = ""  # a non-standard tag such as "!=" (empty when none or a standard one)
    null: bool = False  # YAML null (`~`, `null`, or nothing at all)

    @property
    def text(self) -> str:
        """The string Falco decodes; a stray tag like `!=` is kept as text, not dropped."""
        if self.tag:
            return f"{self.tag} {self.value}" if self.value else self.tag
        return self.value


@dataclass(frozen=True)
class YSeq:
    items: tuple[YNode, ...]
    line: int
    col: int


@dataclass(frozen=True)
class YMap:
    """A mapping in document order; like yaml-cpp's `node[key]`, lookups find the first key."""

    entries: tuple[tuple[YScalar, YNode], ...]
    line: int
    col: int

    def get(self, key: str) -> YNode | None:
        for k, v in self.entries:
            if k.text == key:
                return v
        return None

    def key_node(self, key: str) -> YScalar | None:
        return next((k for k, _ in self.entries if k.text == key), None)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def key_nodes(self) -> list[YScalar]:
        return [k for k, _ in self.entries]


YNode: TypeAlias = YScalar | YSeq | YMap


def is_null(node: YNode | None) -> bool:
    return isinstance(node, YScalar) and node.null


def decode_bool(node: YScalar) -> bool | None:
    """yaml-cpp's boolean conversion; None when the text is not a boolean word."""
    text = node.text
    if not (text.islower() or text.isupper() or (text[:1].isupper() and text[1:].islower())):
        return None
    word = text.lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    return None


def decode_uint(node: YScalar) -> int | None:
    """yaml-cpp's unsigned conversion (decimal, 0x hex, leading-0 octal); None when invalid."""
    m = _RE_UINT.fullmatch(node.text)
    if m is None:
        return None
    digits = m.group(1)
    if digits.lower().startswith("0x"):
        value = int(digits, 16)
    elif digits.startswith("0") and len(digits) > 1:
        value = int(digits, 8)
    else:
        value = int(digits)
    return value if value < 2**32 else None


def read_documents(text: str, path: str) -> list[YNode | None]:
    """Every YAML document of a rules file (None for an empty one); RuleLoadError on bad YAML."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        problem = exc.problem or exc.context or "invalid YAML"
        raise RuleLoadError(
            f"YAML parse error: {problem}",
            source=SourceRef(path, line, col, "rules content"),
            code="yaml-parse",
        ) from None
    except yaml.YAMLError as exc:
        raise RuleLoadError(
            f"YAML parse error: {exc}", source=SourceRef(path, 0, 0, "rules content"),
            code="yaml-parse",
        ) from None
    return [_convert(n, path) if n is not None else None for n in nodes]


def _convert(node: yaml.Node, path: str) -> YNode:
    # Iterative over the document would be overkill: rule files nest a handful of levels deep.
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node, line, col)
    if isinstance(node, yaml.SequenceNode):
        return YSeq(tuple(_convert(v, path) for v in node.value), line, col)
    entries: list[tuple[YScalar, YNode]] = []
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise RuleLoadError(
                "YAML parse error: mapping keys must be plain scalars",
                source=SourceRef(path, key.start_mark.line + 1, key.start_mark.column + 1),
                code="yaml-parse",
            )
        k = _scalar(key, key.start_mark.line + 1, key.start_mark.column + 1)
        entries.append((k, _convert(value, path)))
    return YMap(tuple(entries), line, col)


def _scalar(node: yaml.ScalarNode, line: int, col: int) -> YScalar:
    plain = node.style in (None, "")  # the C composer says '' for plain
    tag = "" if node.tag.startswith(_STD_TAG_PREFIX) or node.tag in ("!", "") else node.tag
    null = plain and node.tag == _NULL_TAG
    return YScalar(node.value, line, col, plain=plain, tag=tag, null=null)


# ---- decoding a key the way Falco's reader does (decode_val / decode_seq) -----------------------


def at(node: YNode | None, ref: SourceRef) -> SourceRef:
    """`ref` moved to the position of `node` (the item description is kept)."""
    return ref if node is None else SourceRef(ref.path, node.line, node.col, ref.item)


def _invalid(message: str, source: SourceRef) -> RuleLoadError:
    return RuleLoadError(message, source=source, code="yaml-validate")


def get_scalar(item: YMap, key: str, ref: SourceRef) -> YScalar:
    """A required, non-empty scalar, with Falco's messages when it is not one."""
    node = item.get(key)
    if node is None:
        raise _invalid(f"Item has no mapping for key '{key}'", ref)
    if is_null(node):
        raise _invalid(f"Mapping for key '{key}' is empty", at(item.key_node(key), ref))
    if not isinstance(node, YScalar):
        raise _invalid("Value is not a scalar value", at(node, ref))
    if node.text == "":
        raise _invalid("Value must be non-empty", at(node, ref))
    return node


def get_str(item: YMap, key: str, ref: SourceRef) -> str:
    return get_scalar(item, key, ref).text


def get_bool(item: YMap, key: str, ref: SourceRef, default: bool | None = None) -> bool:
    """A boolean key; optional when a default is given (a present but empty key is an error)."""
    if default is not None and key not in item:
        return default
    node = get_scalar(item, key, ref)
    value = decode_bool(node)
    if value is None:
        raise _invalid("Can't decode YAML scalar value", at(node, ref))
    return value


def get_uint(item: YMap, key: str, ref: SourceRef, default: int | None = None) -> int:
    if default is not None and key not in item:
        return default
    node = get_scalar(item, key, ref)
    value = decode_uint(node)
    if value is None:
        raise _invalid("Can't decode YAML scalar value", at(node, ref))
    return value


def get_strings(item: YMap, key: str, ref: SourceRef, *, optional: bool = False) -> list[str]:
    """A sequence of scalars (list items, tags)."""
    node = item.get(key)
    if node is None:
        if optional:
            return []
        raise _invalid(f"Item has no mapping for key '{key}'", ref)
    if not isinstance(node, YSeq):
        raise _invalid("Value is not a sequence", at(node, ref))
    out: list[str] = []
    for v in node.items:
        if not isinstance(v, YScalar) or v.null:
            raise _invalid("sequence value is not scalar", at(v, ref))
        out.append(v.text)
    return out
