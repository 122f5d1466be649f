"""Regenerate `schemas/fields.tsv` and `schemas/event_types.tsv` from reference data.

Usage (from the repository root):

    .venv/bin/python scripts/gen_catalog.py                # write both files
    .venv/bin/python scripts/gen_catalog.py --check        # exit 1 if a file would change
    .venv/bin/python scripts/gen_catalog.py --fetch-driver # get the driver tables first (apt)

Inputs:

- fields: `field-catalog.tsv` of the shared Falco anchors (`--anchors`, default
  `../shared/anchors/falco-rules` next to the repository): every libsinsp field (falcosecurity/libs
  48dfd53c) plus the container plugin's `container.*`/`k8s.*` fields. Plugin types (`string`, ...)
  become their PT_* equivalents; plugin argument info (`ARG:Index, Key, Required`) becomes the
  EPF_ARG_* flags libsinsp gives plugin fields. How each field takes its argument (`[N]`, `[KEY]`,
  `.NAME`) and which fields a syscall trace cannot supply are decided here, in ARG_SYNTAX and
  UNAVAILABLE below.
- event types: `event_table.c` and `ppm_events_public.h` of the libs driver that Debian's sysdig
  0.29.3 is built from (libs e5c53d64, package `falcosecurity-scap-dkms`; `--fetch-driver` runs
  `apt-get download` + `dpkg -x` into a temporary directory, or pass `--driver-src DIR`). The event
  table gives names, categories, directions and parameters; the PPM_SC list adds the syscalls that
  only reach libsinsp as generic events (their evt.type is the syscall name). When `sysdig` is on
  PATH its `sysdig -L` listing is compared with the parsed table and must agree.
  Falco today knows more than that 2022 table: SUPPLEMENT_SYSCALLS (PPM_SC codes 329-395 of current
  falcosecurity/libs `driver/ppm_events_public.h`), RENAMED and NEW_META_EVENTS bring it up to date.

Output is sorted the same way on every run (catalog order for fields, event-table order for events),
so a regenerated file only changes when an input does.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ANCHORS = REPO.parent / "shared" / "anchors" / "falco-rules"
OUT_DIR = REPO / "schemas"

FIELD_COLUMNS = (
    "name", "type", "flags", "arg", "arg_syntax", "is_list", "available", "unavailable_reason",
    "source", "description",
)  # fmt: skip
EVENT_COLUMNS = (
    "name", "kind", "category", "directions", "enter_params", "exit_params", "source",
)  # fmt: skip

# Container-plugin field types (plugin API names) -> libsinsp PT_* types.
PLUGIN_TYPES = {
    "string": "PT_CHARBUF",
    "uint64": "PT_UINT64",
    "int64": "PT_INT64",
    "bool": "PT_BOOL",
    "reltime": "PT_RELTIME",
    "abstime": "PT_ABSTIME",
    "ipaddr": "PT_IPADDR",
    "ipnet": "PT_IPNET",
}

# How libsinsp parses each argument-taking field (sinsp_filtercheck_*.cpp parse_field_name):
# "index" = field[N], "key" = field[NAME], "dot" = field.NAME.
ARG_SYNTAX = {
    "evt.type.is": "dot",  # evt.type.is.open
    "evt.arg": "index,dot",  # evt.arg[0], evt.arg.flags
    "evt.rawarg": "dot",  # evt.rawarg.fd; [N] is rejected ("must be expressed explicitly")
    "evt.abspath": "dot",  # evt.abspath.src / .dst
    "fd.types": "index",
    "proc.aexe": "index",
    "proc.aexepath": "index",
    "proc.aname": "index",
    "proc.args": "index",
    "proc.aargs": "index",
    "proc.acmdline": "index",
    "proc.apid": "index",
    "proc.env": "key",
    "proc.aenv": "index,key",
    "thread.cgroup": "dot",  # thread.cgroup.cpuacct
}
# Flags say EPF_ARG_REQUIRED, but parse_field_name also accepts the bare name (m_argid = 0).
ARG_OVERRIDE = {"evt.abspath": "allowed"}

# Fields a syscall trace (our eBPF capture or an imported .scap) cannot supply: (prefix, reason).
# A prefix ending in "." matches a whole class; otherwise the name must match exactly.
_DNS = "needs live DNS resolution at capture time (libsinsp dns_manager)"
_PLUGIN_SRC = "only plugin event sources have it; a syscall trace has none"
_LATENCY = "deprecated: libsinsp now always returns 0 (enter events are dropped)"
_CPU = "CPU usage sampled each second from /proc by a live inspector"
_PROBE = "deprecated plugin field: needs the runtime's health/liveness/readiness probe config"
UNAVAILABLE: tuple[tuple[str, str], ...] = (
    ("k8s.", "needs Kubernetes metadata (pod, namespace, labels), which a syscall trace lacks"),
    ("evt.infra.", "needs Docker infrastructure events, which a syscall trace does not hold"),
    *((f"fd.{side}ip.name", _DNS) for side in ("c", "s", "l", "r")),
    *((name, _PLUGIN_SRC) for name in ("evt.pluginname", "evt.plugininfo")),
    *((f"evt.latency{sfx}", _LATENCY) for sfx in ("", ".s", ".ns", ".quantized", ".human")),
    ("evt.wait_latency", _LATENCY),
    *((f"thread.cpu{sfx}", _CPU) for sfx in ("", ".user", ".system")),
    *((f"container.{p}", _PROBE) for p in ("healthcheck", "liveness_probe", "readiness_probe")),
    *(
        (f"proc.is_container_{p}", _PROBE)
        for p in ("healthcheck", "liveness_probe", "readiness_probe")
    ),
)

# PPM_SC codes 329..395 of current falcosecurity/libs (driver/ppm_events_public.h, PPM_SC_FIELDS);
# the 2022 header stops at 328. 382 is unassigned; 396-400 are tracepoints, not evt.type values.
SUPPLEMENT_SYSCALLS = (
    "open_by_handle_at", "io_uring_setup", "io_uring_enter", "io_uring_register", "mlock2",
    "getegid32", "fsconfig", "fspick", "fsmount", "fsopen", "open_tree", "move_mount",
    "mount_setattr", "memfd_create", "memfd_secret", "ioperm", "kexec_file_load", "pidfd_getfd",
    "pidfd_open", "pidfd_send_signal", "pkey_alloc", "pkey_mprotect", "pkey_free",
    "landlock_create_ruleset", "quotactl_fd", "landlock_restrict_self", "landlock_add_rule",
    "epoll_pwait2", "migrate_pages", "move_pages", "preadv2", "pwritev2", "kcmp", "sched_setattr",
    "mbind", "epoll_ctl_old", "lookup_dcookie", "modify_ldt", "statx", "set_mempolicy",
    "io_pgetevents", "set_mempolicy_home_node", "semtimedop", "get_kernel_syms", "readahead",
    "futex_waitv", "getpmsg", "name_to_handle_at", "process_mrelease", "nfsservctl",
    "epoll_wait_old", "rseq", "create_module", "sched_getattr", "faccessat2", "_sysctl",
    "query_module", "get_mempolicy", "sync_file_range", "process_madvise", "membarrier", "iopl",
    "close_range", "fanotify_mark", "recv", "send",
)  # fmt: skip
# Names the 2022 tables spell differently from current libs.
RENAMED = {"sigreturn": "rt_sigreturn", "newfsstat": "newfstatat", "sysdigevent": "scapevent"}
# Event-table entries current libs no longer has (its k8s/mesos clients and tracers were removed).
REMOVED = frozenset({"k8s", "mesos", "tracer"})
# Non-syscall events added since 2022: (name, category, directions).
NEW_META_EVENTS = (("asyncevent", "EC_OTHER", "enter"),)
# Event-table entries that come from tracepoints rather than syscalls.
TRACEPOINT_EVENTS = frozenset({"procexit", "switch", "signaldeliver", "page_fault"})


# ---------------------------------------------------------------------------------------------
# fields
# ---------------------------------------------------------------------------------------------


def _split_flags(text: str) -> list[str]:
    return [f.strip() for f in text.split("|") if f.strip() and f.strip() != "EPF_NONE"]


def _plugin_flags(arg_info: str, description: str) -> list[str]:
    """EPF_* flags libsinsp derives from a plugin field's argument info and deprecation."""
    parts = {p.strip() for p in arg_info.removeprefix("ARG:").split(",")}
    flags = []
    if "Required" in parts:
        flags.append("EPF_ARG_REQUIRED")
    elif parts & {"Index", "Key"}:
        flags.append("EPF_ARG_ALLOWED")
    if "Index" in parts:
        flags.append("EPF_ARG_INDEX")
    if "Key" in parts:
        flags.append("EPF_ARG_KEY")
    if "deprecated" in description.lower().split(".")[0] or "[Deprecated]" in description:
        flags.append("EPF_DEPRECATED")
    return flags


def _arg_syntax(name: str, flags: list[str]) -> str:
    if name in ARG_SYNTAX:
        return ARG_SYNTAX[name]
    kinds = [k for f, k in (("EPF_ARG_INDEX", "index"), ("EPF_ARG_KEY", "key")) if f in flags]
    if name.endswith(".label") and "key" in kinds:
        kinds.append("dot")  # plugin README: container.label.foo, k8s.pod.label.foo
    if kinds or not ({"EPF_ARG_REQUIRED", "EPF_ARG_ALLOWED"} & set(flags)):
        return ",".join(kinds)
    raise SystemExit(f"gen_catalog: no ARG_SYNTAX entry for argument-taking field {name}")


# Exceptions to UNAVAILABLE: the pod and namespace names, which live capture takes from the CRI
# runtime's container labels (io.kubernetes.pod.name/namespace) as the container plugin does.
AVAILABLE = frozenset({"k8s.pod.name", "k8s.ns.name"})


def _availability(name: str) -> tuple[bool, str]:
    if name in AVAILABLE:
        return True, ""
    for prefix, reason in UNAVAILABLE:
        if name == prefix or (prefix.endswith(".") and name.startswith(prefix)):
            return False, reason
    return True, ""


def field_rows(catalog_tsv: Path) -> list[dict[str, str]]:
    """One output row per field of the anchor catalog, in catalog order."""
    rows: list[dict[str, str]] = []
    lines = [ln for ln in catalog_tsv.read_text().splitlines() if ln and not ln.startswith("#")]
    for rec in csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE):
        name, src = rec["field"], rec["source"]
        desc = " ".join(rec["description"].split())
        if src == "container-plugin":
            ptype = PLUGIN_TYPES[rec["type"]]
            flags = _plugin_flags(rec["flags_or_arg"], desc)
        else:
            ptype, flags = rec["type"], _split_flags(rec["flags_or_arg"])
        if "EPF_ARG_REQUIRED" in flags:
            arg = "required"
        elif "EPF_ARG_ALLOWED" in flags:
            arg = "allowed"
        else:
            arg = "none"
        arg = ARG_OVERRIDE.get(name, arg)
        available, reason = _availability(name)
        rows.append({
            "name": name,
            "type": ptype,
            "flags": "|".join(flags),
            "arg": arg,
            "arg_syntax": _arg_syntax(name, flags),
            "is_list": _bool("EPF_IS_LIST" in flags),
            "available": _bool(available),
            "unavailable_reason": reason,
            "source": src,
            "description": desc,
        })  # fmt: skip
    names = [r["name"] for r in rows]
    if len(names) != len(set(names)):
        raise SystemExit("gen_catalog: duplicate field names in the anchor catalog")
    return rows


def _bool(value: bool) -> str:
    return "true" if value else "false"


# ---------------------------------------------------------------------------------------------
# event types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableEntry:
    """One row of the driver's g_event_info table."""

    code: str  # PPME_... (the table's comment; unused slots all say PPME_NA1)
    name: str
    category: str
    flags: frozenset[str]
    params: tuple[tuple[str, str], ...]  # (name, PT_*)
    direction: str  # "enter" | "exit": the table alternates, enter first


_ENTRY_RE = re.compile(r'/\*\s*(PPME_\w+)\s*\*/\s*\{\s*"([^"]*)"\s*,\s*([^,]+),\s*([^,]+),\s*(\d+)')
_PARAM_RE = re.compile(r'\{\s*"([^"]+)"\s*,\s*(PT_\w+)')


def parse_event_table(source: str) -> list[TableEntry]:
    """Entries of g_event_info in table order (C text of driver/event_table.c)."""
    matches = list(_ENTRY_RE.finditer(source))
    entries = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(source)
        body = source[m.end() : end]
        flags = frozenset(f.strip() for f in m.group(4).split("|"))
        # nparams wins over the listed params (seccomp's enter event lists one too many).
        params = tuple(_PARAM_RE.findall(body))[: int(m.group(5))]
        direction = "exit" if i % 2 else "enter"
        entries.append(
            TableEntry(m.group(1), m.group(2), m.group(3).strip(), flags, params, direction)
        )
    if len(entries) % 2:
        raise SystemExit("gen_catalog: odd number of event-table entries; parse went wrong")
    return entries


def parse_ppm_sc(header: str) -> list[str]:
    """Syscall names of the PPM_SC enum, in code order."""
    names = [n.lower() for n in re.findall(r"^\s*PPM_SC_(\w+)\s*=\s*\d+", header, re.M)]
    return [n for n in names if n not in ("unknown", "max")]


def _used(e: TableEntry) -> bool:
    return "EF_UNUSED" not in e.flags and not re.fullmatch(r"NA\d*", e.name)


def _params(params: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{n}:{t}" for n, t in params)


def _latest(entries: list[TableEntry], direction: str) -> TableEntry | None:
    """The current version of an event in one direction: the last entry not marked old."""
    same = [e for e in entries if e.direction == direction]
    current = [e for e in same if "EF_OLD_VERSION" not in e.flags]
    pick = current or same
    return pick[-1] if pick else None


def event_rows(table: list[TableEntry], syscalls: list[str]) -> list[dict[str, str]]:
    """One row per evt.type value: event-table names first (table order), then generic syscalls.

    source: "event_table" or "ppm_sc" (the 2022 driver tables), "supplement" (current libs names).
    """
    by_name: dict[str, list[TableEntry]] = {}
    for e in table:
        if _used(e) and e.name not in REMOVED:
            by_name.setdefault(RENAMED.get(e.name, e.name), []).append(e)
    rows = [_table_row(name, entries) for name, entries in by_name.items()]
    for name, category, directions in NEW_META_EVENTS:
        rows.append(_bare_row(name, "meta", category, directions, "supplement"))
    generic = [(RENAMED.get(s, s), "ppm_sc") for s in syscalls]
    generic += [(s, "supplement") for s in SUPPLEMENT_SYSCALLS]
    known = {r["name"] for r in rows}
    for name, src in generic:
        if name not in known:
            known.add(name)
            src = "supplement" if name in RENAMED.values() else src
            # Generic syscalls arrive as PPME_GENERIC_E/X: both directions, no named params.
            rows.append(_bare_row(name, "syscall", "", "enter,exit", src))
    return rows


def _table_row(name: str, entries: list[TableEntry]) -> dict[str, str]:
    enter, exit_ = _latest(entries, "enter"), _latest(entries, "exit")
    if name == "syscall":
        kind = "generic"  # PPME_GENERIC: its evt.type is the syscall's own name
    elif all(e.code.startswith(("PPME_SYSCALL_", "PPME_SOCKET_")) for e in entries):
        kind = "syscall"
    else:
        kind = "tracepoint" if name in TRACEPOINT_EVENTS else "meta"
    return {
        "name": name,
        "kind": kind,
        "category": (exit_ or enter or entries[0]).category,
        "directions": ",".join(e.direction for e in (enter, exit_) if e is not None),
        "enter_params": _params(enter.params) if enter else "",
        "exit_params": _params(exit_.params) if exit_ else "",
        "source": "supplement" if name in RENAMED.values() else "event_table",
    }


def _bare_row(name: str, kind: str, category: str, directions: str, src: str) -> dict[str, str]:
    return {"name": name, "kind": kind, "category": category, "directions": directions,
            "enter_params": "", "exit_params": "", "source": src}  # fmt: skip


_SYSDIG_LINE = re.compile(r"^([<>]) (\w+)\((.*)\)$")


def check_against_sysdig(table: list[TableEntry], listing: str) -> None:
    """`sysdig -L` prints the same event table; fail loudly if our parse disagrees with it."""
    seen = set()
    for line in listing.splitlines():
        m = _SYSDIG_LINE.match(line.strip())
        if not m:
            continue
        params = tuple(p.split(" ", 1)[1] for p in m.group(3).split(", ") if p)
        seen.add((m.group(1), m.group(2), params))
    # sysdig -L leaves out unused slots, superseded versions and internal events.
    ours = {
        (">" if e.direction == "enter" else "<", e.name, tuple(n for n, _ in e.params))
        for e in table
        if not e.flags & {"EF_UNUSED", "EF_OLD_VERSION"} and "EC_INTERNAL" not in e.category
    }
    if seen != ours:
        diff = sorted(seen ^ ours)[:10]
        raise SystemExit(f"gen_catalog: event_table.c and `sysdig -L` disagree, e.g. {diff}")


def find_driver_src(explicit: str | None, fetch: bool, tmp: Path) -> Path:
    if explicit:
        return Path(explicit)
    if fetch:
        subprocess.run(["apt-get", "download", "falcosecurity-scap-dkms"], cwd=tmp, check=True)
        deb = next(tmp.glob("falcosecurity-scap-dkms_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(tmp / "x")], check=True)
        hits = sorted(glob.glob(str(tmp / "x/usr/src/scap-*")))
    else:
        hits = sorted(glob.glob("/usr/src/scap-*"))
    if not hits:
        raise SystemExit(
            "gen_catalog: driver tables not found; pass --driver-src or --fetch-driver"
        )
    return Path(hits[-1])


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------


def render_tsv(columns: tuple[str, ...], rows: list[dict[str, str]], note: str) -> str:
    out = io.StringIO()
    out.write(f"# {note}\n")
    out.write("\t".join(columns) + "\n")
    for row in rows:
        cells = [row[c] for c in columns]
        if any("\t" in c or "\n" in c for c in cells):
            raise SystemExit(f"gen_catalog: tab or newline in {cells[0]}")
        out.write("\t".join(cells) + "\n")
    return out.getvalue()


def render_fields(anchors: Path) -> str:
    note = (
        "generated by scripts/gen_catalog.py from the Falco anchors' field-catalog.tsv "
        "(libs 48dfd53c + container plugin 0b3cbd8d); do not edit"
    )
    return render_tsv(FIELD_COLUMNS, field_rows(anchors / "field-catalog.tsv"), note)


def render_events(driver: Path, use_sysdig: bool) -> str:
    table = parse_event_table((driver / "event_table.c").read_text())
    syscalls = parse_ppm_sc((driver / "ppm_events_public.h").read_text())
    if use_sysdig and shutil.which("sysdig"):
        listing = subprocess.run(["sysdig", "-L"], capture_output=True, text=True, check=True)
        check_against_sysdig(table, listing.stdout)
    note = (
        "generated by scripts/gen_catalog.py from the libs driver tables of Debian's sysdig 0.29.3 "
        "(libs e5c53d64) plus a supplement from current libs; do not edit"
    )
    return render_tsv(EVENT_COLUMNS, event_rows(table, syscalls), note)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--anchors", default=str(DEFAULT_ANCHORS), help="Falco anchors directory")
    ap.add_argument("--driver-src", help="directory holding event_table.c, ppm_events_public.h")
    ap.add_argument("--fetch-driver", action="store_true", help="apt-get download the driver")
    ap.add_argument("--no-sysdig", action="store_true", help="skip the `sysdig -L` cross-check")
    ap.add_argument("--fields-only", action="store_true", help="only regenerate fields.tsv")
    ap.add_argument("--check", action="store_true", help="exit 1 if an output would change")
    args = ap.parse_args(argv)
    outputs = {OUT_DIR / "fields.tsv": render_fields(Path(args.anchors))}
    if not args.fields_only:
        with tempfile.TemporaryDirectory() as tmp:
            driver = find_driver_src(args.driver_src, args.fetch_driver, Path(tmp))
            outputs[OUT_DIR / "event_types.tsv"] = render_events(driver, not args.no_sysdig)
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(REPO)}", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(text := outputs[p])
        print(f"wrote {p.relative_to(REPO)} ({text.count(chr(10)) - 2} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
