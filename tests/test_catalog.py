"""The field catalog and event-type table against the upstream Falco rules and libsinsp's rules."""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from analyze import ast
from analyze.parser import parse_condition
from schemas import catalog
from schemas.catalog import FieldInfo, check_operator, check_value, lookup, resolve

REPO = Path(__file__).resolve().parent.parent
ANCHORS = REPO.parent / "shared" / "anchors" / "falco-rules"
needs_anchors = pytest.mark.skipif(not ANCHORS.is_dir(), reason="shared Falco anchors not present")


def field(name: str, arg: str | None = None) -> FieldInfo:
    return resolve(name, arg)


# ---- the catalog itself -------------------------------------------------------------------------


def test_counts_and_order() -> None:
    fields = catalog.all_fields()
    assert len(fields) == 293
    assert fields[0].name == "evt.latency"  # catalog order: libsinsp's tables first
    assert fields[-1].name == "k8s.deployment.labels"  # ... the container plugin's last
    assert len({f.name for f in fields}) == len(fields)
    assert all(f.type.startswith("PT_") for f in fields)
    assert all(f.arg in ("none", "required", "allowed") for f in fields)
    assert all(f.available == (f.unavailable_reason == "") for f in fields)


def test_field_classes() -> None:
    classes = catalog.field_classes()
    for name in ("evt", "proc", "thread", "fd", "user", "group", "container", "k8s", "fs.path"):
        assert classes[name], name
    assert classes["fs.path"][0].name == "fs.path.name"
    assert sum(len(v) for v in classes.values()) == len(catalog.all_fields())


def test_k8s_known_but_unavailable() -> None:
    k8s = catalog.field_classes()["k8s"]
    assert len(k8s) == 29
    # The pod and namespace names come from the CRI runtime's labels (capture/cri_runtime.py).
    assert {f.name for f in k8s if f.available} == {"k8s.pod.name", "k8s.ns.name"}
    assert all("Kubernetes" in f.unavailable_reason for f in k8s if not f.available)
    info = field("k8s.ns.name")
    assert info.type == "PT_CHARBUF"  # plugin "string" mapped to PT_*
    assert field("k8s.pod.label", "app").name == "k8s.pod.label"
    assert field("k8s.pod.label.app").name == "k8s.pod.label"


@pytest.mark.parametrize(
    "name",
    ["proc.name", "evt.type", "fd.name", "container.id", "container.image.repository",
     "fs.path.name", "user.loginuid", "thread.cap_effective", "evt.rawres"],
)  # fmt: skip
def test_trace_fields_available(name: str) -> None:
    assert field(name).available


@pytest.mark.parametrize(
    "name",
    ["fd.sip.name", "evt.pluginname", "evt.latency", "thread.cpu", "evt.infra.docker.name",
     "container.healthcheck", "proc.is_container_liveness_probe"],
)  # fmt: skip
def test_unavailable_fields_say_why(name: str) -> None:
    info = field(name)
    assert not info.available and info.unavailable_reason


def test_flags_and_deprecation() -> None:
    assert field("fd.types").is_list and "EPF_IS_LIST" in field("fd.types").flags
    assert field("evt.latency").deprecated
    assert field("k8s.rc.name").deprecated  # plugin "Deprecated." description -> EPF_DEPRECATED
    assert not field("proc.name").deprecated
    assert field("container.mount.dest", "0").flags >= {"EPF_ARG_REQUIRED", "EPF_ARG_KEY"}
    assert "EPF_NONE" not in field("proc.name").flags


# ---- names and arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arg", "base"),
    [
        ("evt.arg.flags", None, "evt.arg"),
        ("evt.arg", "0", "evt.arg"),
        ("evt.rawarg.res", None, "evt.rawarg"),
        ("proc.aname", "2", "proc.aname"),
        ("proc.aname", None, "proc.aname"),  # no index: any ancestor
        ("proc.aname[3]", None, "proc.aname"),
        ("proc.env", "HOME", "proc.env"),
        ("proc.aenv", "1", "proc.aenv"),
        ("proc.aenv", "PATH", "proc.aenv"),
        ("proc.args", "0", "proc.args"),
        ("thread.cgroup.cpuacct", None, "thread.cgroup"),
        ("thread.cgroups", None, "thread.cgroups"),
        ("evt.type.is.open", None, "evt.type.is"),
        ("evt.type.is.3", None, "evt.type.is"),
        ("evt.abspath", None, "evt.abspath"),
        ("evt.abspath.dst", None, "evt.abspath"),
        ("container.mount.dest", "/var/run/docker.sock", "container.mount.dest"),
        ("container.mount.dest", "0", "container.mount.dest"),
        ("container.label.maintainer", None, "container.label"),
        ("evt.args", None, "evt.args"),
    ],
)
def test_resolves(name: str, arg: str | None, base: str) -> None:
    info = lookup(name, arg)
    assert info is not None and info.name == base


@pytest.mark.parametrize(
    ("name", "arg", "message"),
    [
        ("proc.nam", None, "unknown field 'proc.nam'"),
        ("evt.arg", None, "field 'evt.arg' requires an argument (evt.arg.NAME or evt.arg[N])"),
        ("thread.cgroup", None, "requires an argument"),
        ("proc.name", "1", "field 'proc.name' does not take an argument"),
        ("proc.aname", "x", "field 'proc.aname' needs a numeric index, not 'x'"),
        ("evt.arg", "flags", "needs a numeric index"),
        ("evt.rawarg", "0", "takes its argument as evt.rawarg.NAME"),
        ("evt.arg.flags", "1", "cannot take an argument in brackets as well"),
        ("evt.abspath.other", None, "evt.abspath takes .src or .dst"),
        ("evt.type.is.nosuchevent", None, "unknown event type 'nosuchevent'"),
        ("proc.name.x", None, "unknown field 'proc.name.x'"),
    ],
)
def test_rejects_with_reason(name: str, arg: str | None, message: str) -> None:
    with pytest.raises(catalog.FieldError, match=re.escape(message)):
        resolve(name, arg)
    assert lookup(name, arg) is None


def test_rawarg_takes_parameter_type() -> None:
    assert field("evt.rawarg.fd").type == "PT_FD"
    assert field("evt.rawarg.res").type == "PT_ERRNO"
    assert catalog.value_kind(field("evt.rawarg.fd")) == "number"
    assert field("evt.rawarg.nosuchparam").type == "PT_DYN"
    assert field("evt.arg.fd").type == "PT_CHARBUF"  # evt.arg renders every argument as text


# ---- operators and values -----------------------------------------------------------------------

NUMERIC_MSG = "'contains' operator not supported for numeric filters"


@pytest.mark.parametrize(
    ("name", "op", "error"),
    [
        ("proc.name", "contains", None),
        ("proc.name", "<", None),  # libsinsp compares strings with strcmp
        ("proc.name", "pmatch", None),
        ("proc.name", "regex", None),
        ("proc.name", "bcontains", "'bcontains' operator not supported for string filters"),
        ("proc.pid", "contains", NUMERIC_MSG),
        ("proc.pid", ">=", None),
        ("proc.pid", "in", None),
        ("proc.pid", "glob", "'glob' operator not supported for numeric filters"),
        ("proc.duration", "<", None),
        ("fd.sport", "in", None),
        ("fd.sport", "startswith", "'startswith' operator not supported for numeric filters"),
        ("evt.failed", "=", None),
        ("evt.failed", "<", "'<' operator not supported for bool filters"),
        ("fd.net", "=", None),
        ("fd.snet", "in", None),
        ("fd.ip", "!=", None),
        ("fd.ip", "contains", "'contains' operator not supported for ip address and network"),
        ("fd.net", "<", "'<' operator not supported for ip address and network filters"),
        ("evt.buffer", "bcontains", None),
        ("evt.buffer", "contains", None),
        ("evt.buffer", "icontains", "'icontains' operator not supported for buffer filters"),
        ("fd.types", "in", None),
        ("fd.types", "intersects", None),
        ("fd.types", "=", "'=' operator not supported list filters"),
        ("evt.outputtime", "=", "can only be used in outputs"),
        ("evt.outputtime", "exists", "can only be used in outputs"),
        ("proc.fdusage", ">", None),
        ("proc.name", "==", None),
        ("proc.name", "like", "unrecognized filter comparison operator 'like'"),
        ("evt.rawarg.tuple", "=", "'=' operator not supported for type 'PT_SOCKTUPLE'"),
        ("evt.rawarg.tuple", "exists", None),
    ],
)
def test_check_operator(name: str, op: str, error: str | None) -> None:
    result = check_operator(field(name), op)
    if error is None:
        assert result is None
    else:
        assert result is not None and error in result


@pytest.mark.parametrize("info", catalog.all_fields(), ids=lambda f: f.name)
def test_exists_on_every_filterable_field(info: FieldInfo) -> None:
    assert (check_operator(info, "exists") is None) == ("EPF_PRINT_ONLY" not in info.flags)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("proc.name", "string"), ("proc.pid", "number"), ("evt.failed", "bool"),
        ("fd.ip", "ip"), ("fd.net", "ipnet"), ("fd.sport", "port"), ("proc.duration", "reltime"),
        ("evt.rawtime", "abstime"), ("evt.buffer", "bytes"), ("fd.types", "list"),
        ("proc.fdusage", "number"), ("container.privileged", "bool"),
    ],
)  # fmt: skip
def test_value_kind(name: str, kind: str) -> None:
    assert catalog.value_kind(field(name)) == kind


@pytest.mark.parametrize(
    ("name", "literal", "error"),
    [
        ("proc.pid", "1234", None),
        ("proc.pid", "-1", None),
        ("proc.pid", "0x10", "0x10 is not a valid number"),  # libsinsp parses decimal only
        ("proc.pid", "12ab", "12ab is not a valid number"),
        ("proc.pid", "", " is not a valid number"),
        ("user.uid", "0", None),
        ("proc.fdusage", "0.5", None),
        ("evt.failed", "true", None),
        ("evt.failed", "TRUE", "unrecognized boolean value TRUE"),
        ("fd.ip", "10.0.0.1", None),
        ("fd.ip", "::1", None),
        ("fd.ip", "10.0.0.0/8", "unrecognized IPv4 address 10.0.0.0/8"),
        ("fd.ip", "300.0.0.1", "unrecognized IPv4 address"),
        ("fd.net", "127.0.0.0/8", None),
        ("fd.net", "10.1.2.3/8", None),  # host bits may be set
        ("fd.net", "fd00::/8", None),
        ("fd.net", "127.0.0.1", "unrecognized IP network 127.0.0.1"),
        ("fd.net", "10.0.0.0/33", "unrecognized IP network"),
        ("fd.sport", "22", None),
        ("fd.sport", "ssh", None),  # service names go through getservbyname
        ("fd.sport", "no-such-service-xyz", "unrecognized protocol no-such-service-xyz"),
        ("proc.name", "anything at all", None),
        ("evt.type", "openat", None),
        ("evt.type", "container", None),
        ("evt.type", "kcmp", None),  # generic syscall: known by name only
        ("evt.type", "opn", "unknown event type opn"),
        ("evt.arg.flags", "O_RDONLY", None),
        ("evt.rawarg.res", "-2", None),
        ("evt.rawarg.res", "ENOENT", "ENOENT is not a valid number"),
    ],
)
def test_check_value(name: str, literal: str, error: str | None) -> None:
    result = check_value(field(name), literal)
    if error is None:
        assert result is None
    else:
        assert result is not None and error in result


def test_check_value_hex_for_byte_operators() -> None:
    buf = field("evt.buffer")
    assert check_value(buf, "7f454c46", "bcontains") is None
    assert check_value(buf, "7f45z", "bstartswith") is not None
    assert check_value(buf, "ELF", "contains") is None


# ---- the upstream rule files --------------------------------------------------------------------


def _used_fields(path: Path) -> Iterator[tuple[str, str | None, str]]:
    """(field, bracket arg, type) as listed in fields-used.txt, args from its 'field args' lines."""
    for line in path.read_text().splitlines():
        m = re.match(r"  ([a-z0-9_.]+)\s+(\S+)\s+\d+\s+\d+\s+\d+\s+\d+$", line)
        if m:
            yield m.group(1), None, m.group(2)
        if line.startswith("# field args in conditions:"):
            for item in line.split(":", 1)[1].split(", "):
                m = re.match(r"\s*([a-z0-9_.]+)\[(.*)\]=\d+$", item)
                assert m, item
                yield m.group(1), m.group(2), ""


@needs_anchors
def test_every_field_the_upstream_rules_use_resolves() -> None:
    plugin_types = {"string": "PT_CHARBUF", "bool": "PT_BOOL", "abstime": "PT_ABSTIME"}
    used = list(_used_fields(ANCHORS / "fields-used.txt"))
    assert len(used) > 100
    by_name = {f.name: f for f in catalog.all_fields()}
    for name, arg, typ in used:
        info = lookup(name, arg)
        if info is None and arg is None:  # listed bare, used only with its required argument
            info = by_name.get(name)
            assert info is not None and info.arg == "required", name
            assert any(n == name and a is not None for n, a, _ in used), name
        assert info is not None, (name, arg)
        if typ and not typ.startswith("evt.arg"):
            assert info.type == plugin_types.get(typ, typ), name


def _rule_files() -> list[Path]:
    return [ANCHORS / "rules" / "falco_rules.yaml", ANCHORS / "rules-legacy/falco_rules-4.0.0.yaml"]


def _checks(path: Path) -> Iterator[tuple[str, ast.Node]]:
    docs = yaml.safe_load(path.read_text())
    lists = {d["list"]: d["items"] for d in docs if "list" in d}
    for doc in docs:
        if "condition" in doc:
            tree = parse_condition(doc["condition"])
            for node in tree.walk():
                if isinstance(node, ast.UnaryCheck | ast.BinaryCheck):
                    yield doc.get("rule") or doc.get("macro"), _expand(node, lists)


def _expand(node: ast.Node, lists: dict[str, list[str]]) -> ast.Node:
    # Lists are plain text substitutions in Falco: swap list names for their items.
    if not (isinstance(node, ast.BinaryCheck) and isinstance(node.right, ast.ValueList)):
        return node
    values: list[str] = []
    pending = [v.value for v in node.right.values]
    while pending:
        v = pending.pop(0)
        if v in lists:
            pending[:0] = [str(i) for i in lists[v]]
        else:
            values.append(v.strip("\"'"))
    return ast.BinaryCheck(node.left, node.op, ast.ValueList(tuple(ast.Literal(v) for v in values)))


@needs_anchors
@pytest.mark.parametrize("path", _rule_files(), ids=lambda p: p.name)
def test_upstream_rules_pass_field_operator_and_value_checks(path: Path) -> None:
    problems = []
    count = 0
    for where, check in _checks(path):
        assert isinstance(check, ast.UnaryCheck | ast.BinaryCheck)
        if not isinstance(check.left, ast.Field):
            continue
        count += 1
        info = lookup(check.left.name, check.left.arg)
        if info is None:
            problems.append((where, check.left.text, "unknown"))
            continue
        if (err := check_operator(info, check.op)) is not None:
            problems.append((where, check.left.text, err))
        if isinstance(check, ast.BinaryCheck):
            right = check.right
            literals = right.values if isinstance(right, ast.ValueList) else (right,)
            for lit in literals:
                if not isinstance(lit, ast.Literal):
                    continue
                if (err := check_value(info, lit.value, check.op)) is not None:
                    problems.append((where, check.left.text, err))
    assert count > 200
    assert problems == []


@needs_anchors
def test_event_types_cover_the_upstream_rules() -> None:
    known = set(catalog.event_types())
    lines = (ANCHORS / "rule-evttypes.tsv").read_text().splitlines()[1:]
    used = {t for line in lines for t in line.split("\t")[4].split(",") if t}
    assert len(used) >= 40
    assert used - known == set()


# ---- event types --------------------------------------------------------------------------------


def test_event_types() -> None:
    names = catalog.event_types()
    assert names == sorted(names) and len(names) == len(set(names)) == 412
    syscalls = catalog.syscall_event_types()
    assert len(syscalls) == 398
    assert set(syscalls) < set(names)
    expected = "open openat openat2 execve execveat connect accept4 dup3 init_module finit_module"
    expected += " memfd_create pidfd_open newfstatat"
    assert set(expected.split()) <= set(syscalls)
    for name in ("container", "procexit", "switch", "signaldeliver", "asyncevent"):
        assert name in names and name not in syscalls
    for name in ("NA1", "sysdigevent", "sigreturn", "newfsstat", "k8s", "tracer"):
        assert name not in names


def test_event_type_info() -> None:
    openat = catalog.event_type_info("openat")
    assert openat is not None and openat.kind == "syscall" and openat.category == "EC_FILE"
    assert openat.directions == ("enter", "exit")
    assert ("flags", "PT_FLAGS32") in openat.exit_params
    procexit = catalog.event_type_info("procexit")
    assert procexit is not None and procexit.kind == "tracepoint"
    assert procexit.directions == ("enter",)
    assert catalog.event_type_info("nosuch") is None
    assert catalog.event_param_type("flags") == "PT_FLAGS32"
    assert catalog.event_param_type("nosuch") is None


# ---- loading ------------------------------------------------------------------------------------


def test_loads_once_and_fast() -> None:
    catalog._fields.cache_clear()
    catalog._events.cache_clear()
    start = time.perf_counter()
    catalog.all_fields()
    catalog.event_types()
    assert time.perf_counter() - start < 0.5
    assert catalog.all_fields()[0] is catalog.all_fields()[0]
    start = time.perf_counter()
    for _ in range(1000):
        lookup("evt.arg.flags")
        lookup("proc.aname", "2")
    assert time.perf_counter() - start < 0.5


def _gen_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_catalog", REPO / "scripts/gen_catalog.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_catalog", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@needs_anchors
def test_fields_tsv_is_what_the_generator_makes() -> None:
    gen = _gen_module()
    assert gen.render_fields(ANCHORS) == (REPO / "schemas/fields.tsv").read_text()


def test_event_types_tsv_is_what_the_generator_makes(tmp_path: Path) -> None:
    gen = _gen_module()
    drivers = sorted(Path("/usr/src").glob("scap-*/event_table.c"))
    # Without installed tables, fetch the package (apt-get download; nothing is installed).
    src = drivers[-1].parent if drivers else gen.find_driver_src(None, True, tmp_path)
    text = gen.render_events(src, use_sysdig=True)
    assert text == (REPO / "schemas/event_types.tsv").read_text()
