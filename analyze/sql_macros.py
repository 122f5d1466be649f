"""The SQL macros the engine defines on its connection: fixed SQL that computes what
`analyze.semantics` computes (IP keys, env and mount lookups, base64, getopt), so the translated
conditions can call them.

Bodies hold no rule input: values arrive as macro arguments, bound by the translator.
"""

from __future__ import annotations

__all__ = ["MACROS", "MACRO_DEFINITIONS", "re2_literal"]


def re2_literal(text: str) -> str:
    """`text` matched literally by an RE2 pattern (every non-alphanumeric character escaped)."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else f"\\x{{{ord(c):x}}}"
                   for c in text)


_WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())  # what str.strip strips
_WS = "[" + re2_literal(_WHITESPACE) + "]"
# UTF-8 as hex pairs: a well-formed sequence, else the maximal ill-formed subpart Python's
# 'replace' error handler turns into one U+FFFD, else one stray byte.
_UTF8_VALID = (
    "[0-7][0-9A-F]|C[2-9A-F][89AB][0-9A-F]|D[0-9A-F][89AB][0-9A-F]"
    "|E0[AB][0-9A-F][89AB][0-9A-F]|E[1-9A-CEF][89AB][0-9A-F][89AB][0-9A-F]"
    "|ED[89][0-9A-F][89AB][0-9A-F]|F0[9AB][0-9A-F](?:[89AB][0-9A-F]){2}"
    "|F[1-3](?:[89AB][0-9A-F]){3}|F48[0-9A-F](?:[89AB][0-9A-F]){2}"
)
_UTF8_TRUNCATED = (
    "F0[9AB][0-9A-F][89AB][0-9A-F]|F[1-3](?:[89AB][0-9A-F]){2}|F48[0-9A-F][89AB][0-9A-F]"
    "|E0[AB][0-9A-F]|E[1-9A-CEF][89AB][0-9A-F]|ED[89][0-9A-F]"
    "|F0[9AB][0-9A-F]|F[1-3][89AB][0-9A-F]|F48[0-9A-F]"
)
_UTF8_TOKEN = f"{_UTF8_VALID}|{_UTF8_TRUNCATED}|[0-9A-F]{{2}}"

# (name, parameters, body). Bodies hold no rule input: values arrive as macro arguments.
MACRO_DEFINITIONS: tuple[tuple[str, str, str], ...] = (
    # -- IP addresses as "4:<32 bits>" / "6:<128 bits>" keys (sql_translate.ip_key), NULL when
    # the text is not an address. `list_transform([x], lambda v: ...)[1]` binds x once: a macro
    # argument used twice would be expanded (and planned) twice.
    ("sysreplay_ipv4_bits", "ip", r"""CASE WHEN regexp_full_match(ip,
        '(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}')
    THEN list_transform([array_to_string(list_transform(string_split(ip, '.'),
        lambda o: lpad(bin(TRY_CAST(o AS UTINYINT)), 8, '0')), '')],
        lambda b: CASE WHEN length(b) = 32 THEN b END)[1] END"""),
    ("sysreplay_ipv6_groups", "s", """CASE WHEN s = '' THEN '' ELSE list_transform([
    list_transform(string_split(s, ':'), lambda g: CASE
        WHEN contains(g, '.') THEN sysreplay_ipv4_bits(g)
        WHEN regexp_full_match(g, '[0-9A-Fa-f]{1,4}')
        THEN lpad(bin(TRY_CAST('0x' || g AS USMALLINT)), 16, '0') END)],
    lambda l: CASE WHEN len(list_filter(l, lambda x: x IS NULL)) = 0
                   THEN array_to_string(l, '') END)[1] END"""),
    ("sysreplay_ipv6_bits", "ip", """list_transform([string_split(ip, '::')], lambda p:
    list_transform([[sysreplay_ipv6_groups(p[1]), sysreplay_ipv6_groups(p[2])]], lambda b:
        CASE WHEN len(p) = 1 AND length(b[1]) = 128 THEN b[1]
             WHEN len(p) = 2 AND length(b[1]) + length(b[2]) <= 112
             THEN b[1] || repeat('0', 128 - length(b[1]) - length(b[2])) || b[2] END)[1])[1]"""),
    ("sysreplay_ip_key", "ip", """CASE WHEN contains(ip, ':') THEN '6:' || sysreplay_ipv6_bits(ip)
    ELSE '4:' || sysreplay_ipv4_bits(ip) END"""),
    # -- semantics.env_lookup's str.strip() --
    ("sysreplay_strip", "s", f"regexp_replace(s, '^{_WS}+|{_WS}+$', '', 'g')"),
    # -- semantics.b64_decode: a BLOB, or NULL when the text is not canonical base64 --
    ("sysreplay_b64_body", "s", "regexp_replace(rtrim(s, chr(0)), '={1,2}$', '')"),
    ("sysreplay_b64_blob", "b",
     "try(from_base64(b || repeat('=', (4 - length(b) % 4) % 4)))"),
    ("sysreplay_b64_decode", "s", """CASE WHEN rtrim(s, chr(0)) = '' THEN ''::BLOB
    WHEN length(sysreplay_b64_body(s)) % 4 <> 1
        AND regexp_full_match(sysreplay_b64_body(s), '[A-Za-z0-9+/]+')
        AND rtrim(to_base64(sysreplay_b64_blob(sysreplay_b64_body(s))), '=')
            = sysreplay_b64_body(s)
    THEN sysreplay_b64_blob(sysreplay_b64_body(s)) END"""),
    # -- semantics.as_charbuf: cut at the first NUL, UTF-8 decoded with U+FFFD replacements --
    ("sysreplay_charbuf", "b", f"""decode(unhex(array_to_string(list_transform(
    regexp_extract_all(regexp_extract(hex(b), '^((?:[0-9A-F]{{2}})*?)(?:00|$)', 1),
                       '{_UTF8_TOKEN}'),
    lambda t: CASE WHEN regexp_full_match(t, '{_UTF8_VALID}') THEN t ELSE 'EFBFBD' END), '')))"""),
    # -- semantics.mount_lookup: items split at ',', parts as `_mount_parts` finds them --
    ("sysreplay_mount_items", "m", "list_filter(string_split(m, ','), lambda i: i <> '')"),
    ("sysreplay_mount_split", "item, p", """CASE WHEN item IS NULL THEN NULL WHEN len(p) >= 5
    THEN [p[1], array_to_string(p[2:len(p) - 3], ':'), p[len(p) - 2], p[len(p) - 1], p[len(p)]]
    ELSE list_concat([p[1], ''], p[2:]) END"""),
    ("sysreplay_mount_part", "item, k",
     "sysreplay_mount_split(item, string_split(item, ':'))[k + 1]"),
    # -- semantics.getopt (list mode); state mode 0 scanning, 1 value pending, 2 stopped --
    ("sysreplay_getopt_map", "chars, valid", """list_transform(chars,
    lambda c: CASE WHEN c <> ':' AND contains(valid, c) THEN c ELSE '?' END)"""),
    ("sysreplay_getopt_cluster", "out, chars, valid, wv, k", """CASE
    WHEN k IS NULL THEN {'out': list_concat(out, sysreplay_getopt_map(chars, valid)), 'mode': 0}
    WHEN k < len(chars) THEN {'out': list_concat(out, sysreplay_getopt_map(chars[1:k - 1], valid),
        [chars[k], array_to_string(chars[k + 1:], '')]), 'mode': 0}
    ELSE {'out': list_concat(out, sysreplay_getopt_map(chars[1:k - 1], valid), [chars[k]]),
        'mode': 1} END"""),
    ("sysreplay_getopt_step", "s, t, valid, wv", """CASE
    WHEN s.mode = 2 THEN s
    WHEN s.mode = 1 THEN {'out': list_append(s.out, t), 'mode': 0}
    WHEN t = '--' THEN {'out': s.out, 'mode': 2}
    WHEN length(t) > 2 AND starts_with(t, '--') THEN s
    WHEN length(t) < 2 OR NOT starts_with(t, '-') THEN {'out': s.out, 'mode': 2}
    ELSE sysreplay_getopt_cluster(s.out, string_split(t[2:], ''), valid, wv,
        list_position(list_transform(string_split(t[2:], ''), lambda c: contains(wv, c)), true))
    END"""),
    ("sysreplay_getopt_end", "r", """CASE WHEN r.mode = 1
    THEN list_append(r.out[1:len(r.out) - 1], '') ELSE r.out END"""),
    ("sysreplay_getopt", "args, valid, wv", """sysreplay_getopt_end(list_reduce(args,
    lambda s, t: sysreplay_getopt_step(s, t, valid, wv), {'out': []::VARCHAR[], 'mode': 0}))"""),
)
MACROS: tuple[str, ...] = tuple(
    f"CREATE OR REPLACE TEMP MACRO {name}({args}) AS ({body})"
    for name, args, body in MACRO_DEFINITIONS
)
