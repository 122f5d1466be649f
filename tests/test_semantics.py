"""analyze.semantics: Falco's operator meaning, checked against glibc and ports of libsinsp."""

from __future__ import annotations

import ctypes
import ipaddress
import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyze import semantics as sem

FNM_CASEFOLD = 1 << 4
_libc = ctypes.CDLL("libc.so.6")
_libc.fnmatch.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]


def fnmatch(pattern: str, value: str, casefold: bool = False) -> bool:
    """glibc's fnmatch, as libsinsp calls it (flags 0 or FNM_CASEFOLD)."""
    flags = FNM_CASEFOLD if casefold else 0
    return bool(_libc.fnmatch(pattern.encode(), value.encode(), flags) == 0)


# ASCII only: glibc in the C locale matches bytes, our regexes match code points.
GLOB_TOKENS = st.sampled_from(
    ["a", "b", "B", "/", ".", "*", "?", "[", "]", "!", "^", "-", "\\", ":", "z",
     "[:alpha:]", "[:upper:]", "[:digit:]", "[=a=]", "[.b.]", "1"]
)
VALUES = st.text(alphabet="abB/.*?[]!^-\\:z1", max_size=7)


@settings(max_examples=400, deadline=None)
@given(st.lists(GLOB_TOKENS, max_size=7).map("".join), VALUES, st.booleans())
def test_glob_matches_glibc_fnmatch(pattern: str, value: str, casefold: bool) -> None:
    assert sem.glob_match(pattern, value, ignore_case=casefold) == fnmatch(
        pattern, value, casefold)


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("/usr/*", "/usr/local/bin/x", True),  # no FNM_PATHNAME: '*' crosses '/'
    ("*.sh", ".hidden.sh", True),  # no FNM_PERIOD
    ("a\\*", "a*", True),
    ("a\\*", "ab", False),
    ("a\\", "a\\", False),  # a trailing backslash never matches
    ("[!a]x", "bx", True),
    ("[^a]x", "ax", False),
    ("[]]", "]", True),
    ("[z-a]", "m", False),  # an inverted range matches nothing
    ("[", "[", True),  # an unclosed bracket is literal
    ("a?c", "a\nc", True),
])
def test_glob_cases(pattern: str, value: str, expected: bool) -> None:
    assert sem.glob_match(pattern, value) is expected
    assert fnmatch(pattern, value) is expected


def test_iglob_folds_ascii_only() -> None:
    assert sem.glob_match("/TMP/*.SH", "/tmp/x.sh", ignore_case=True)
    assert sem.glob_match("[A-C]", "b", ignore_case=True)
    assert not sem.glob_match("É", "é", ignore_case=True)  # the C locale folds ASCII only


def test_regexes_run_in_re2() -> None:
    """pyarrow (RE2) agrees with Python's re on what the bodies mean."""
    cases = [("[!a-c]*", "x/y"), ("\\[x", "[x"), ("[[:punct:]]", "-"), ("*é?", "aéb"),
             ("a\\", "a\\")]
    for pattern, value in cases:
        for casefold in (False, True):
            body = sem.glob_regex(pattern, ignore_case=casefold)
            got = pc.match_substring_regex(pa.array([value]), pattern=sem.anchored(body))
            assert got[0].as_py() is (re.fullmatch(body, value) is not None)


# ---- pmatch: a port of libsinsp's path_prefix_map as the reference ----------------------------


def path_prefix_search(paths: list[str], value: str) -> bool:
    """libsinsp's path_prefix_search, tree and all (prefix_search.h)."""
    tree: dict[str, tuple[dict | None, bool]] = {}
    for path in paths:
        node, comps = tree, ["root", *sem.split_path(path)]
        for i, comp in enumerate(comps):
            last = i == len(comps) - 1
            sub, _ = node.get(comp, (None, False))
            if comp in node and sub is None:
                break  # a shorter path is already there
            if last:
                node[comp] = (None, True)
                break
            if comp not in node:
                node[comp] = ({}, False)
            node = node[comp][0]  # type: ignore[assignment]
    return _match(tree, ["root", *sem.split_path(value)])


def _match(tree: dict, comps: list[str]) -> bool:
    entries = [(k, v) for k, v in tree.items() if k == comps[0]]
    entries += [(k, v) for k, v in tree.items() if any(c in k for c in "?*[")
                and fnmatch(k, comps[0])]
    for _, (sub, terminal) in entries:
        if sub is None:
            return terminal
        if len(comps) > 1 and _match(sub, comps[1:]):
            return True
    return False


PATH_PARTS = st.lists(st.sampled_from(["var", "run", "lib", "v*", "*", "r?n", ""]), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(PATH_PARTS.map("/".join), min_size=1, max_size=3),
       st.lists(st.sampled_from(["var", "run", "lib", "vx", ""]), max_size=4).map("/".join))
def test_pmatch_matches_libsinsp_prefix_search(paths: list[str], value: str) -> None:
    assert sem.pmatch(value, paths) == path_prefix_search(paths, value)


@pytest.mark.parametrize(("value", "expected"), [
    ("/var/run/docker", True),  # examples from libsinsp's prefix_search.h
    ("/boot", False),
    ("/var/lib/messages", False),
    ("/var", False),
    ("/var/run", True),
    ("/var/runx", False),
    ("//var//run/", True),
    ("var/run/x", True),
])
def test_pmatch_cases(value: str, expected: bool) -> None:
    assert sem.pmatch(value, ["/var/run", "/etc", "/lib", "/usr/lib"]) is expected


def test_pmatch_root_matches_everything() -> None:
    assert sem.pmatch("/anything", ["/"])
    assert sem.pmatch("", [""])


# ---- literals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("literal", "ptype", "expected"), [
    ("42", "PT_INT64", 42),
    (" -7", "PT_INT64", -7),
    ("+3", "PT_UINT64", 3),
    ("-1", "PT_UINT32", 4294967295),  # strtoul wraps
    ("65537", "PT_PORT", 1),
    ("40000", "PT_INT16", 40000 - 65536),
    ("1.5", "PT_DOUBLE", 1.5),
])
def test_numbers(literal: str, ptype: str, expected: int | float) -> None:
    assert sem.parse_number(literal, ptype) == expected


@pytest.mark.parametrize("literal", ["0x10", "1e3", "", "12a"])
def test_numbers_are_decimal_only(literal: str) -> None:
    with pytest.raises(sem.LiteralError, match="not a valid number"):
        sem.parse_number(literal, "PT_INT64")


def test_convert_literal_per_kind() -> None:
    assert sem.convert_literal("PT_BOOL", "true") is True
    assert sem.convert_literal("PT_PORT", "ssh") == 22
    assert sem.convert_literal("PT_PORT", "") == 0
    assert sem.convert_literal("PT_IPADDR", "10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert sem.convert_literal("PT_IPADDR", "::1") == ipaddress.ip_address("::1")
    assert sem.convert_literal("PT_IPNET", "10.1.2.3/8") == ipaddress.ip_network("10.0.0.0/8")
    assert sem.convert_literal("PT_CHARBUF", "0a0d", "bcontains") == b"\n\r"
    assert sem.convert_literal("PT_BYTEBUF", "abc", "contains") == b"abc"
    assert sem.convert_literal("PT_CHARBUF", "12") == "12"
    assert sem.convert_literal("PT_RELTIME", "12") == 12
    with pytest.raises(sem.LiteralError, match="unrecognized boolean"):
        sem.convert_literal("PT_BOOL", "yes")
    with pytest.raises(sem.LiteralError, match="unrecognized IP network"):
        sem.convert_literal("PT_IPNET", "10.0.0.0")
    with pytest.raises(sem.LiteralError, match="hex digit pairs"):
        sem.convert_literal("PT_BYTEBUF", "abc", "bcontains")
    with pytest.raises(sem.LiteralError, match="unrecognized protocol"):
        sem.convert_literal("PT_PORT", "no-such-service")


def test_int_range() -> None:
    assert sem.int_range("PT_UINT16") == (0, 65535)
    assert sem.int_range("PT_INT8") == (-128, 127)


def test_pair_matches() -> None:
    assert sem.pair_matches("=", [False, True])
    assert not sem.pair_matches("!=", [True, False])
    assert sem.pair_matches("!=", [None, True])  # a server socket has only one side
    assert not sem.pair_matches("!=", [None, None])
    assert not sem.pair_matches("=", [None, None])


# ---- transformers and keyed fields -------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("aGVsbG8=", b"hello"),
    ("aGVsbG8", b"hello"),  # padding is optional
    ("", b""),
    ("aGVsbG8*", None),  # not in the alphabet
    ("QR==", None),  # trailing bits must be zero
    ("Q", None),
    ("=", None),
    ("aGVs\nbG8=", None),
])
def test_b64_decode(text: str, expected: bytes | None) -> None:
    assert sem.b64_decode(text) == expected


def test_as_charbuf_stops_at_nul() -> None:
    assert sem.as_charbuf(b"ab\0cd") == "ab"


@pytest.mark.parametrize(("path", "expected"), [
    ("/usr/bin/ls", "ls"), ("ls", "ls"), ("/usr/bin/", ""), ("", ""),
])
def test_basename(path: str, expected: str) -> None:
    assert sem.basename(path) == expected


def test_env_lookup() -> None:
    env = "HOME=/root PATH=/bin:/usr/bin HOMEDIR=/x EMPTY="
    assert sem.env_lookup(env, "HOME") == "/root"
    assert sem.env_lookup(env, "PATH") == "/bin:/usr/bin"
    assert sem.env_lookup(env, "EMPTY") == ""
    assert sem.env_lookup(env, "NOPE") == ""


def test_mount_lookup() -> None:
    mounts = "/host/etc:/etc:ro:false:rprivate,/var/run/docker.sock:/run/d.sock::true:rprivate"
    assert sem.mount_lookup(mounts, "container.mount", "0") == "/host/etc:/etc:ro:false:rprivate"
    assert sem.mount_lookup(mounts, "container.mount", "5") == "none"
    assert sem.mount_lookup(mounts, "container.mount.dest", "/var/run/*") == "/run/d.sock"
    assert sem.mount_lookup(mounts, "container.mount.source", "/etc") == "/host/etc"
    assert sem.mount_lookup(mounts, "container.mount.rdwr", "1") == "true"
    assert sem.mount_lookup(mounts, "container.mount.mode", "/host/etc") == "ro"
    assert sem.mount_lookup(mounts, "container.mount.propagation", "/nope") is None


@pytest.mark.parametrize(("args", "optstring", "expected"), [
    (["-n", "-t", "nat", "-L"], "nt:L", ["n", "t", "nat", "L"]),
    (["-ntnat"], "nt:", ["n", "t", "nat"]),
    (["-x", "-n"], "n", ["?", "n"]),
    (["-n", "file", "-L"], "nL", ["n"]),  # stops at the first non-option
    (["--exec", "-n"], "n", ["n"]),  # long options are skipped
    (["-n", "--", "-L"], "nL", ["n"]),
    (["-t"], "t:", [""]),  # a missing value
    (["-"], "n", []),
    ([], "n", []),
    (["-a:"], ":a", ["a", "?"]),
])
def test_getopt(args: list[str], optstring: str, expected: list[str]) -> None:
    assert sem.getopt(args, optstring) == expected


def test_icontains_regex_is_ascii_case_insensitive() -> None:
    body = sem.icontains_regex("Id_RSA.")
    assert re.search(body, "cat ~/.ssh/ID_rsa.pub")
    assert not re.search(body, "id_rsaX")
    assert re.search(sem.icontains_regex(""), "anything")
