"""Falco's operator semantics as pure functions and data, shared by both engines.

The replay evaluator and the SQL translator must agree on what every operator means; this module
holds that knowledge, with no Arrow, DuckDB or trace I/O in it. Regular expressions it produces are
in the RE2 dialect (what pyarrow's `match_substring_regex` and DuckDB's `regexp_*` run) and, being
built only from `\\xHH` escapes, classes and `(?flags:...)` groups, are also valid Python `re`
patterns. Bodies are unanchored: wrap them with `anchored()` for a whole-value match (RE2's `$` is
end of text; Python users call `re.fullmatch(body, ...)` instead).

Decisions, each following libsinsp (userspace/libsinsp, filter_compare.cpp and friends):
- Literals are text until converted per field type (`convert_literal`). Numbers are decimal only
  (sscanf "%d"), unsigned types wrap like strtoul (`user.uid = -1` is 4294967295); bools are
  `true`/`false`; ports are numbers or service names (getservbyname); IPs are v4 when the text has
  a '.', networks need `/len` and compare with their host bits masked off.
- `glob`/`iglob` are glibc `fnmatch(pattern, value, 0)` (`FNM_CASEFOLD` for iglob): no
  FNM_PATHNAME, so `*` and `?` cross '/'; no FNM_PERIOD; backslash escapes; a trailing backslash
  never matches; `[!..]`/`[^..]` negate; POSIX classes are the C locale's. Case folding is ASCII
  only (the C locale's tolower), and so is `icontains` (strcasestr).
- `regex` is RE2 with libsinsp's ANCHOR_BOTH: the pattern must match the whole value.
- `pmatch` is libsinsp's path_prefix_search: values and search paths are split on '/', empty
  components dropped (so leading, doubled and trailing slashes do not matter), and a search path
  matches when its components equal the value's first components; a component holding `?*[` is a
  glob for one component. The search path `/` matches every value.
- `bcontains`/`bstartswith` take hex digit pairs (`bcontains 0a0d`).
- Filter-only fd fields have no column: `fd.ip`/`fd.net` compare the client and server IPs,
  `fd.port`/`fd.proto` the client and server ports (`FD_PAIRS`). `=`, `in`, `<`, ... are true when
  either side matches; `!=` when every side that exists differs (libsinsp's compare_ip/net/port: on
  a server socket only the server side exists). `fd.cnet`/`fd.snet`/`fd.lnet`/`fd.rnet` test one
  IP for CIDR containment (`FD_NETS`).
- Transformers: `tolower`/`toupper` are ASCII; `b64` DECODES base64 (libsinsp's
  decodeWithoutPadding: padding optional, strict alphabet and trailing bits, failure = cannot be
  extracted); `basename` keeps what follows the last '/'; `len` counts bytes of a string or
  buffer, items of a list; `join(sep, list)`, `concat(a, b, ...)` (any missing part makes the result
  missing) and `getopt(args, optstring)` (list mode of libsinsp's getopt transformer, `getopt()`).
- Keyed fields: `proc.env[NAME]` is the first NAME=value of `proc.env` ("" when NAME is unset,
  as libsinsp returns); `container.mount*[N|path]` look in `container.mounts` (`mount_lookup`).

How checks combine values (what both engines implement; the replay engine's tests pin it down):
- A value that cannot be extracted (null) makes its check false, whatever the operator, `exists`
  included; `not` then makes it true. Two-valued logic: SQL must make every leaf NULL-safe.
- Ancestor fields without index (`proc.aname`, `proc.apid`, `proc.aexe`, `proc.aexepath`) compare
  every ancestor from index 1 (the parent) up and hold when ANY does, `!=` included (libsinsp's
  loop over parents); `exists` means "has a parent". `proc.aname[N]` is element N, 0 being the
  process itself. With a modifier (our extension), `anyof`/`allof`/`oneof` ask for any, every
  (and at least one) or exactly one ancestor; an ancestor whose value is unknown fails `allof`.
- List fields (EPF_IS_LIST: `fd.types`, getopt(), a `(a, b)` transformer list) take `in` as
  "every item is listed" and `intersects` as "some item is" (libsinsp's compare_rhs for lists);
  an empty list cannot be extracted.
- `x in (...)`/`intersects` on one value is equality with any listed value; with `val(field)`
  on the right, the other field's value of the same event is the right-hand side.
- A field the trace has no column for cannot be extracted on any event (engines warn once).
Known divergences: glob `?` and `*` count code points where glibc's C locale counts bytes;
`evt.time` is rendered in UTC (Falco uses the local zone); `proc.env[NAME]` cannot see values
holding spaces (the trace joins the environment with spaces).
"""

from __future__ import annotations

import base64
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache

from schemas import catalog

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LiteralValue = str | int | float | bool | bytes | IPAddress | IPNetwork

# ---- filter-only and derived fields ------------------------------------------------------------

# Filter-only fields compared against two columns (client, server); see the module docstring.
FD_PAIRS: dict[str, tuple[str, str]] = {
    "fd.ip": ("fd.cip", "fd.sip"),
    "fd.net": ("fd.cip", "fd.sip"),
    "fd.port": ("fd.cport", "fd.sport"),
    "fd.proto": ("fd.cport", "fd.sport"),
}
# Network fields that test one IP column for CIDR containment.
FD_NETS: dict[str, str] = {
    "fd.cnet": "fd.cip", "fd.snet": "fd.sip", "fd.lnet": "fd.lip", "fd.rnet": "fd.rip",
}
# container.mount.X[key]: which part of a mount item each field yields, and what the key names.
MOUNT_FIELDS: dict[str, int | None] = {
    "container.mount": None,  # the whole item
    "container.mount.source": 0,
    "container.mount.dest": 1,
    "container.mount.mode": 2,
    "container.mount.rdwr": 3,
    "container.mount.propagation": 4,
}
MOUNT_ITEM_SEPARATOR = ","  # schemas.trace: container.mounts items are comma-joined
MOUNT_NONE = "none"  # what container.mount[...] yields when no mount matches


def pair_matches(op: str, sides: Sequence[bool | None]) -> bool:
    """Combine one filter-only fd check over its sides (None: that side does not exist)."""
    known = [s for s in sides if s is not None]
    if op == "!=":
        return bool(known) and all(known)
    return any(known)


# ---- literal conversion ------------------------------------------------------------------------

# Bit width and signedness of libsinsp's integer types (flt_compare casts them so).
_INT_TYPES: dict[str, tuple[int, bool]] = {
    **dict.fromkeys(("PT_INT8",), (8, True)),
    **dict.fromkeys(("PT_INT16",), (16, True)),
    **dict.fromkeys(("PT_INT32",), (32, True)),
    **dict.fromkeys(("PT_INT64", "PT_FD", "PT_PID", "PT_ERRNO"), (64, True)),
    **dict.fromkeys(("PT_UINT8", "PT_FLAGS8", "PT_ENUMFLAGS8", "PT_SIGTYPE"), (8, False)),
    **dict.fromkeys(("PT_UINT16", "PT_FLAGS16", "PT_ENUMFLAGS16", "PT_PORT", "PT_SYSCALLID"),
                    (16, False)),
    **dict.fromkeys(("PT_UINT32", "PT_FLAGS32", "PT_ENUMFLAGS32", "PT_MODE", "PT_UID", "PT_GID"),
                    (32, False)),
    **dict.fromkeys(("PT_UINT64", "PT_RELTIME", "PT_ABSTIME"), (64, False)),
}
_DECIMAL_RE = re.compile(r"\s*([+-]?[0-9]+)\Z")
_HEX_PAIRS_RE = re.compile(r"([0-9a-fA-F]{2})*\Z")


class LiteralError(ValueError):
    """A literal that does not convert to the field's type (libsinsp's wording)."""


@cache
def value_kind(ptype: str, is_list: bool = False) -> str:
    """The catalog's value kind for a libsinsp type (see `schemas.catalog.value_kind`)."""
    info = catalog.FieldInfo(
        name="<value>", type=ptype, arg="none", is_list=is_list, available=True,
        unavailable_reason="", description="", flags=frozenset(), deprecated=False,
    )
    return catalog.value_kind(info)


def convert_literal(ptype: str, literal: str, op: str | None = None) -> LiteralValue:
    """`literal` as a value of libsinsp type `ptype` (one element of a list type).

    Raises LiteralError when libsinsp's string_to_rawval would. `op` matters for
    bcontains/bstartswith, whose values are hex digit pairs whatever the field type.
    """
    if op in ("bcontains", "bstartswith"):
        return hex_bytes(literal)
    kind = value_kind(ptype)
    if kind in ("number", "reltime", "abstime"):
        return parse_number(literal, ptype)
    converters = {
        "bool": parse_bool, "port": parse_port, "ip": parse_ip, "ipnet": parse_net,
        "bytes": lambda text: text.encode("utf-8"),
    }
    convert = converters.get(kind)
    return literal if convert is None else convert(literal)


def parse_number(literal: str, ptype: str = "PT_INT64") -> int | float:
    """A decimal integer (or float for PT_DOUBLE), wrapped to the type like strtoul does."""
    if ptype == "PT_DOUBLE":
        try:
            return float(literal)
        except ValueError:
            raise LiteralError(f"{literal} is not a valid number") from None
    match = _DECIMAL_RE.match(literal)
    if match is None:
        raise LiteralError(f"{literal} is not a valid number")
    value = int(match.group(1))
    bits, signed = _INT_TYPES.get(ptype, (64, True))
    if signed:
        value = max(-(1 << 63), min(value, (1 << 63) - 1))  # strtoll saturates
        value &= (1 << bits) - 1
        return value - (1 << bits) if value >= 1 << (bits - 1) else value
    return value % (1 << bits)


def int_range(ptype: str) -> tuple[int, int]:
    """The values libsinsp's integer type can hold."""
    bits, signed = _INT_TYPES.get(ptype, (64, True))
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def parse_bool(literal: str) -> bool:
    if literal not in ("true", "false"):
        raise LiteralError(f"filter error: unrecognized boolean value {literal}")
    return literal == "true"


def parse_port(literal: str) -> int:
    """A port number, or a service name resolved like getservbyname (empty means 0)."""
    if literal == "":
        return 0
    if literal.isdigit():
        return int(literal) % (1 << 16)
    try:
        return socket.getservbyname(literal)
    except OSError:
        raise LiteralError(f"unrecognized protocol {literal}") from None


def parse_ip(literal: str) -> IPAddress:
    v4 = "." in literal  # libsinsp's test for which family to parse
    try:
        return ipaddress.IPv4Address(literal) if v4 else ipaddress.IPv6Address(literal)
    except ValueError:
        family = "IPv4" if v4 else "IPv6"
        raise LiteralError(f"unrecognized {family} address {literal}") from None


def parse_net(literal: str) -> IPNetwork:
    """`addr/len`; host bits are masked off (libsinsp compares `ip & mask == net & mask`)."""
    addr, slash, bits = literal.partition("/")
    v4 = "." in literal
    if not slash or not bits.isdigit() or int(bits) > (32 if v4 else 128):
        raise LiteralError(f"unrecognized IP network {literal}")
    parse_ip(addr)
    cls = ipaddress.IPv4Network if v4 else ipaddress.IPv6Network
    return cls(literal, strict=False)


def ip_of(text: str | None) -> IPAddress | None:
    """A trace's IP text as an address (None when empty or not an IP)."""
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def hex_bytes(literal: str) -> bytes:
    if not _HEX_PAIRS_RE.match(literal):
        raise LiteralError(f"requires a string of hex digit pairs, not '{literal}'")
    return bytes.fromhex(literal)


# ---- glob, pmatch, regex, icontains ------------------------------------------------------------

_POSIX_CLASSES: dict[str, str] = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "blank": " \t", "cntrl": "\x00-\x1f\x7f",
    "digit": "0-9", "graph": "\x21-\x7e", "lower": "a-z", "print": "\x20-\x7e",
    "punct": "!-/:-@[-`{-~", "space": " \t\n\r\x0b\x0c", "upper": "A-Z", "xdigit": "0-9A-Fa-f",
}


def _never() -> str:
    """A regex that matches nothing, in RE2 and Python alike: 'a' then start-of-text."""
    return r"(?:\x61^)"


def _esc(ch: str) -> str:
    """One character as a regex literal, valid in RE2 and Python, inside or outside classes."""
    if ch.isascii() and (ch.isalnum() or ch == "_"):
        return ch
    return f"\\x{ord(ch):02x}" if ord(ch) < 128 else ch


def _fold(ch: str) -> str:
    """The C locale's tolower: ASCII letters only."""
    return ch.lower() if "A" <= ch <= "Z" else ch


@dataclass(frozen=True)
class _Bracket:
    """A parsed `[...]` expression: code point ranges (inclusive) and negation."""

    ranges: tuple[tuple[int, int], ...]
    negated: bool

    def folded(self) -> _Bracket:
        """The set of characters whose ASCII-lowercase is in this set (FNM_CASEFOLD)."""
        ascii_members = {c for c in range(128) if self._has(ord(_fold(chr(c))))}
        high = tuple((max(lo, 128), hi) for lo, hi in self.ranges if hi >= 128)
        return _Bracket(tuple((c, c) for c in sorted(ascii_members)) + high, self.negated)

    def _has(self, code: int) -> bool:
        return any(lo <= code <= hi for lo, hi in self.ranges)

    def regex(self, exclude_slash: bool) -> str:
        ranges = [(lo, hi) for lo, hi in self.ranges if lo <= hi]
        negated = self.negated
        if exclude_slash:
            if negated:
                ranges.append((0x2F, 0x2F))
            else:
                ranges = _without(ranges, 0x2F)
        if not ranges:
            return r"(?s:.)" if negated and not exclude_slash else (
                "[^/]" if negated else _never())
        body = "".join(_esc(chr(lo)) if lo == hi else f"{_esc(chr(lo))}-{_esc(chr(hi))}"
                       for lo, hi in ranges)
        return f"[^{body}]" if negated else f"[{body}]"


def _without(ranges: list[tuple[int, int]], code: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if lo <= code <= hi:
            out.extend(r for r in ((lo, code - 1), (code + 1, hi)) if r[0] <= r[1])
        else:
            out.append((lo, hi))
    return out


def _parse_bracket(pattern: str, start: int) -> tuple[_Bracket, int] | None:
    """Parse the bracket expression opening at pattern[start] ('['); None if it never closes
    (then glibc takes the '[' literally). Returns the set and the index after ']'."""
    i = start + 1
    negated = i < len(pattern) and pattern[i] in "!^"
    i += negated
    ranges: list[tuple[int, int]] = []
    first = True
    while i < len(pattern):
        ch = pattern[i]
        if ch == "]" and not first:
            return _Bracket(tuple(ranges), negated), i + 1
        first = False
        if ch == "[" and pattern[i + 1:i + 2] in (":", "=", "."):
            end = pattern.find(pattern[i + 1] + "]", i + 2)
            if end != -1:
                name = pattern[i + 2:end]
                if pattern[i + 1] == ":":
                    ranges.extend(_class_ranges(name))
                elif len(name) == 1:  # [=c=] and [.c.] name one character
                    ranges.append((ord(name), ord(name)))
                i = end + 2
                continue
        if ch == "\\" and i + 1 < len(pattern):
            i += 1
            ch = pattern[i]
        lo = ord(ch)
        if pattern[i + 1:i + 2] == "-" and i + 2 < len(pattern) and pattern[i + 2] != "]":
            i += 2
            if pattern[i] == "\\" and i + 1 < len(pattern):
                i += 1
            ranges.append((lo, ord(pattern[i])))  # an inverted range matches nothing
        else:
            ranges.append((lo, lo))
        i += 1
    return None


def _class_ranges(name: str) -> list[tuple[int, int]]:
    spec = _POSIX_CLASSES.get(name, "")
    out, i = [], 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            out.append((ord(spec[i]), ord(spec[i + 2])))
            i += 3
        else:
            out.append((ord(spec[i]), ord(spec[i])))
            i += 1
    return out


def glob_regex(pattern: str, *, ignore_case: bool = False, component: bool = False) -> str:
    """A regex body matching what fnmatch(pattern, value, 0 or FNM_CASEFOLD) accepts.

    `component=True` is for one path component (pmatch): nothing may match '/'.
    """
    any_char = "[^/]" if component else r"(?s:.)"
    if ignore_case:
        # glibc folds the pattern's characters (range ends included) as well as the value's.
        pattern = "".join(_fold(ch) for ch in pattern)
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            parts.append(any_char + "*")
        elif ch == "?":
            parts.append(any_char)
        elif ch == "[" and (parsed := _parse_bracket(pattern, i)) is not None:
            bracket, i = parsed
            parts.append((bracket.folded() if ignore_case else bracket).regex(component))
            continue
        else:
            if ch == "\\":
                i += 1
                if i == len(pattern):
                    return _never()  # glibc: "Trailing \ loses"
                ch = pattern[i]
            parts.append(_literal_char(ch, ignore_case))
        i += 1
    return "(?:" + "".join(parts) + ")"


def _literal_char(ch: str, ignore_case: bool) -> str:
    if ignore_case and ch.isascii() and ch.isalpha():
        return f"[{ch.lower()}{ch.upper()}]"
    return _esc(ch)


def icontains_regex(needle: str) -> str:
    """A regex body for strcasestr(value, needle): ASCII letters match either case."""
    return "(?:" + "".join(_literal_char(ch, True) for ch in needle) + ")"


def regex_body(pattern: str) -> str:
    """libsinsp's `regex` operator: RE2, anchored at both ends (use with `anchored`)."""
    return f"(?:{pattern})"


def anchored(body: str) -> str:
    """A whole-value match for RE2 engines (pyarrow, DuckDB): `^body$`."""
    return f"^{body}$"


def split_path(path: str) -> list[str]:
    """libsinsp's path_prefix_map_ut::split_path: components, empty ones dropped."""
    return [part for part in path.split("/") if part]


def pmatch_regex(paths: Iterable[str]) -> str:
    """A regex body (use with `anchored`) true when one of `paths` is a pmatch prefix."""
    alternatives: list[str] = []
    for path in paths:
        comps = split_path(path)
        if not comps:
            return r"(?s:.*)"  # the search path "/" matches everything
        alternatives.append("/+".join(_pmatch_component(c) for c in comps))
    if not alternatives:
        return _never()
    return "(?s:/*(?:" + "|".join(alternatives) + ")(?:/.*)?)"


def _pmatch_component(comp: str) -> str:
    if not any(ch in comp for ch in "?*["):
        return "".join(_esc(ch) for ch in comp)
    if set(comp) == {"*"}:
        return "[^/]+"  # a component is never empty; `*` alone must not match nothing
    return glob_regex(comp, component=True)


def pmatch(value: str, paths: Iterable[str]) -> bool:
    """Reference implementation of pmatch (for tests and per-value evaluation)."""
    return re.fullmatch(pmatch_regex(paths), value) is not None


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """Reference implementation of glob/iglob."""
    return re.fullmatch(glob_regex(pattern, ignore_case=ignore_case), value) is not None


# ---- transformers and keyed fields ------------------------------------------------------------

_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def b64_decode(data: str | bytes) -> bytes | None:
    """libsinsp's Base64::decodeWithoutPadding: None when the input is not valid base64."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    raw = raw.rstrip(b"\0")  # the transformer skips terminators before decoding
    if not raw:
        return b""
    body = raw[:-2] if raw.endswith(b"==") else raw[:-1] if raw.endswith(b"=") else raw
    if not body or len(body) % 4 == 1 or not set(body) <= _B64_ALPHABET:
        return None
    decoded = base64.b64decode(body + b"=" * (-len(body) % 4))
    # Unused trailing bits must be zero: a canonical encoding re-encodes to the same text.
    if base64.b64encode(decoded).rstrip(b"=") != body:
        return None
    return decoded


def as_charbuf(data: bytes) -> str:
    """Bytes as a PT_CHARBUF value: cut at the first NUL (libsinsp compares C strings)."""
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def basename(path: str) -> str:
    return path[path.rfind("/") + 1:]


def env_lookup(env: str, name: str) -> str:
    """proc.env[NAME] from the space-separated `proc.env`: the first NAME=value, else ""."""
    prefix = name + "="
    for item in env.split(" "):
        if item.startswith(prefix):
            return item[len(prefix):].strip()
    return ""


def mount_lookup(mounts: str, field: str, arg: str) -> str | None:
    """container.mount*[arg] from `container.mounts` (None when it cannot be extracted).

    `arg` is an index or a glob: matched against the mount's destination for
    container.mount.source, against its source for the other fields; the first match wins.
    """
    part = MOUNT_FIELDS[field]
    items = [m for m in mounts.split(MOUNT_ITEM_SEPARATOR) if m]
    found: str | None = None
    if _DECIMAL_RE.match(arg):
        index = int(arg)
        found = items[index] if 0 <= index < len(items) else None
    else:
        key = 1 if part == 0 else 0
        found = next((m for m in items if glob_match(arg, _mount_parts(m)[key])), None)
    if found is None:
        return MOUNT_NONE if part is None else None
    if part is None:
        return found
    parts = _mount_parts(found)
    return parts[part] if part < len(parts) else None


def _mount_parts(item: str) -> tuple[str, ...]:
    # source:dest:mode:rdwr:propagation; paths may hold ':', the last three fields do not.
    head, *tail = item.rsplit(":", 3)
    source, _, dest = head.partition(":")
    return (source, dest, *tail)


def getopt(args: Sequence[str], optstring: str) -> list[str]:
    """libsinsp's getopt() transformer in list mode: the short options found in `args`.

    Each option yields its letter, then its value when the optstring gives it one (`t:`);
    unknown options yield '?'; a missing value yields "" and ends the scan. Scanning stops at
    "--" and at the first non-option; long options (`--x`) are skipped.
    """
    valid, with_value = _parse_optstring(optstring)
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        if len(arg) > 2 and arg.startswith("--"):
            i += 1
            continue
        if len(arg) < 2 or arg[0] != "-":
            break
        i = _getopt_cluster(args, i, valid, with_value, out)
    return out


def _getopt_cluster(args: Sequence[str], i: int, valid: set[str], with_value: set[str],
                    out: list[str]) -> int:
    """Scan one `-abc` token; return the index of the next token to look at."""
    arg = args[i]
    for j in range(1, len(arg)):
        opt = arg[j]
        if opt == ":" or opt not in valid:
            out.append("?")
            continue
        if opt not in with_value:
            out.append(opt)
            continue
        if j + 1 < len(arg):
            out.extend((opt, arg[j + 1:]))
        elif i + 1 < len(args):
            out.extend((opt, args[i + 1]))
            return i + 2
        else:
            out.append("")  # libsinsp: a missing value is an empty result, then stop
            return len(args)
        break
    return i + 1


def _parse_optstring(optstring: str) -> tuple[set[str], set[str]]:
    valid: set[str] = set()
    with_value: set[str] = set()
    i = 1 if optstring.startswith(":") else 0
    while i < len(optstring):
        opt = optstring[i]
        if opt != ":":
            valid.add(opt)
            if optstring[i + 1:i + 2] == ":":
                with_value.add(opt)
                i += 1
        i += 1
    return valid, with_value


def element_info(info: catalog.FieldInfo) -> catalog.FieldInfo:
    """The type of one value of a (possibly list) field."""
    return replace(info, is_list=False)
