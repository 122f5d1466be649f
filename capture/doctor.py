"""`capture doctor`: can this machine capture, and if not, what exactly to do about it.

Each check is a small function returning a `Check` (ok, what was found, the exact fix). They run
in order and a check whose prerequisite failed is reported as skipped rather than failing with a
confusing second error. Everything is a feature check (a syscall, a file, a compile), never a
kernel-version comparison. `run_checks()` returns a `DoctorReport`; `render_report()` is the
plain-text view (pure), `DoctorReport.to_dict()` the JSON one.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from capture.bpf_render import SUPPORTED_ARCH, arch_supported
from capture.probe import BCC_CFLAGS, TRACEFS_CANDIDATES, detect_features, tracefs_root

BPF_SYSCALL_X86_64 = 321
BPF_MAP_CREATE = 0
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_RINGBUF = 27
TRACEFS_MOUNT = ("mount", "-t", "tracefs", "nodev", str(TRACEFS_CANDIDATES[0]))
REQUIRED_TRACEPOINTS = (("raw_syscalls", "sys_enter"), ("raw_syscalls", "sys_exit"),
                        ("sched", "sched_process_fork"), ("sched", "sched_process_exit"))
SETUP_HINT = "scripts/setup.sh"
# A raw tracepoint, as the capture's syscall probes are (capture/bpf_program.c).
_TRIVIAL_PROGRAM = """
BPF_ARRAY(seen, u64, 1);
RAW_TRACEPOINT_PROBE(sys_enter) {
    u32 zero = 0;
    seen.increment(zero);
    return 0;
}
"""

OK, FAILED, SKIPPED, WARNING = "ok", "failed", "skipped", "warning"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, FAILED, SKIPPED or WARNING (works, with a limitation)
    detail: str  # what was found
    fix: str = ""  # the exact action when not ok

    @property
    def ok(self) -> bool:
        return self.status in (OK, WARNING)


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Capture can run (warnings allowed)."""
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def run_checks(mount_tracefs: bool = False, compile_program: bool = True) -> DoctorReport:
    """Run every check; with `mount_tracefs`, mount tracefs if it is missing."""
    steps: list[tuple[str, Callable[[], Check], tuple[str, ...]]] = [
        ("architecture", check_arch, ()),
        ("root", check_root, ()),
        ("bpf syscall", check_bpf_syscall, ("architecture", "root")),
        ("ring buffer", check_ringbuf, ("bpf syscall",)),
        ("tracefs", lambda: check_tracefs(mount_tracefs), ("root",)),
        ("tracepoints", check_tracepoints, ("tracefs",)),
        ("optional tracepoints", check_optional_tracepoints, ("tracefs",)),
        ("bcc", check_bcc, ()),
        ("kernel headers", check_headers, ()),
        ("compile", check_compile if compile_program else _not_asked,
         ("bcc", "kernel headers", "tracepoints", "bpf syscall")),
    ]
    done: dict[str, Check] = {}
    for name, run, needs in steps:
        missing = [n for n in needs if not done[n].ok]
        done[name] = (Check(name, SKIPPED, f"not checked: needs {', '.join(missing)}")
                      if missing else run())
    return DoctorReport(tuple(done.values()))


def render_report(report: DoctorReport) -> str:
    """Plain text: one line per check, its fix indented under it."""
    marks = {OK: "ok", FAILED: "FAIL", SKIPPED: "skip", WARNING: "warn"}
    lines = []
    for c in report.checks:
        lines.append(f"[{marks[c.status]:>4}] {c.name}: {c.detail}")
        if c.fix and c.status != OK:
            lines.extend(f"       fix: {line}" for line in c.fix.splitlines())
    lines.append("capture can run on this machine." if report.ok
                 else "capture cannot run here until the failures above are fixed.")
    return "\n".join(lines)


# ---- the checks -----------------------------------------------------------------------------

def check_arch() -> Check:
    machine = platform.machine()
    if arch_supported(machine):
        return Check("architecture", OK, machine)
    return Check("architecture", FAILED, f"{machine}: capture knows {SUPPORTED_ARCH} syscall "
                 "numbers only", f"Capture on an {SUPPORTED_ARCH} machine.")


def check_root() -> Check:
    if os.geteuid() == 0:
        return Check("root", OK, "running as root")
    return Check("root", FAILED, f"running as uid {os.geteuid()}",
                 "Run the capture as root, e.g. `sudo .venv/bin/capture record ...`.")


def check_bpf_syscall() -> Check:
    err = _bpf_map_create(BPF_MAP_TYPE_ARRAY, key_size=4, value_size=8, max_entries=1)
    if err == 0:
        return Check("bpf syscall", OK, "bpf(BPF_MAP_CREATE) works")
    if err == 38:  # ENOSYS
        return Check("bpf syscall", FAILED, "this kernel has no bpf() syscall",
                     "Boot a kernel built with CONFIG_BPF_SYSCALL=y.")
    if err in (1, 13):  # EPERM, EACCES
        return Check("bpf syscall", FAILED, f"bpf() is denied ({os.strerror(err)})",
                     "Run as root. In a container: --privileged, or add CAP_BPF, CAP_PERFMON "
                     "and CAP_SYS_ADMIN and no seccomp filter on bpf().")
    return Check("bpf syscall", FAILED, f"bpf(BPF_MAP_CREATE) failed: {os.strerror(err)}",
                 "Check dmesg and that the kernel has CONFIG_BPF_SYSCALL=y.")


def check_ringbuf() -> Check:
    err = _bpf_map_create(BPF_MAP_TYPE_RINGBUF, key_size=0, value_size=0,
                          max_entries=os.sysconf("SC_PAGE_SIZE"))
    if err == 0:
        return Check("ring buffer", OK, "BPF ring buffer maps are supported")
    return Check("ring buffer", FAILED,
                 f"cannot create a BPF ring buffer map ({os.strerror(err)})",
                 "Use a kernel with BPF_MAP_TYPE_RINGBUF (Linux 5.8 or later).")


def check_tracefs(mount: bool) -> Check:
    root = tracefs_root()
    if root is not None:
        return Check("tracefs", OK, f"mounted at {root}")
    fix = " ".join(TRACEFS_MOUNT) + "   (or: capture doctor --fix)"
    if not mount:
        return Check("tracefs", FAILED, "tracefs is not mounted", fix)
    result = subprocess.run(TRACEFS_MOUNT, capture_output=True, text=True, check=False)
    root = tracefs_root()
    if root is not None:
        return Check("tracefs", OK, f"mounted it at {root}")
    reason = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
    return Check("tracefs", FAILED, f"mounting tracefs failed: {reason}",
                 "Mount it by hand: " + " ".join(TRACEFS_MOUNT) +
                 "; the kernel needs CONFIG_TRACING (tracefs).")


def check_tracepoints() -> Check:
    root = tracefs_root()
    assert root is not None
    missing = [f"{c}:{e}" for c, e in REQUIRED_TRACEPOINTS
               if not (root / "events" / c / e / "format").exists()]
    if not missing:
        return Check("tracepoints", OK, ", ".join(f"{c}:{e}" for c, e in REQUIRED_TRACEPOINTS))
    return Check("tracepoints", FAILED, f"missing {', '.join(missing)}",
                 "Use a kernel with CONFIG_FTRACE_SYSCALLS=y and scheduler tracepoints "
                 "(every distribution kernel has them).")


def check_optional_tracepoints() -> Check:
    root = tracefs_root()
    assert root is not None
    features = detect_features(root)
    gaps = []
    if not features.has_group_dead:
        gaps.append("sched_process_exit has no group_dead (process exits are inferred)")
    if not features.local_endpoints:
        gaps.append("no sock:inet_sock_set_state (TCP connects lack their local address)")
    if not features.cgroup_mkdir:
        gaps.append("no cgroup:cgroup_mkdir/cgroup_rmdir with root, id and path (--container "
                    "filters in user space only)")
    if not gaps:
        return Check("optional tracepoints", OK,
                     "sched_process_exit.group_dead, sock:inet_sock_set_state, "
                     "cgroup:cgroup_mkdir/cgroup_rmdir")
    return Check("optional tracepoints", WARNING, "; ".join(gaps),
                 "Nothing to do; a newer kernel fills these fields.")


def check_bcc() -> Check:
    try:
        import bcc
    except ImportError as exc:
        return Check("bcc", FAILED, f"cannot import bcc ({exc})",
                     "apt-get install python3-bpfcc, and create the virtualenv with "
                     f"--system-site-packages (`{SETUP_HINT}` does both).")
    return Check("bcc", OK, f"bcc {getattr(bcc, '__version__', '?')} at "
                 f"{Path(bcc.__file__).parent}")


def check_headers() -> Check:
    build = Path("/lib/modules") / platform.release() / "build"
    if (build / "include").is_dir() or (build / "Makefile").exists():
        return Check("kernel headers", OK, f"{build} -> {build.resolve()}")
    if Path("/sys/kernel/kheaders.tar.xz").exists():
        return Check("kernel headers", OK, "in-kernel headers (/sys/kernel/kheaders.tar.xz)")
    return Check("kernel headers", FAILED, f"{build} does not exist",
                 f"apt-get install linux-headers-{platform.release()}, or run `{SETUP_HINT}` "
                 "(it links the closest Debian headers when the exact ones do not exist).")


def check_compile() -> Check:
    try:
        from bcc import BPF

        program = BPF(text=_TRIVIAL_PROGRAM.encode(), cflags=BCC_CFLAGS)
    except Exception as exc:  # BCC raises bare Exception for compile/load/attach failures
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Check("compile", FAILED, f"BCC could not build a trivial program: {first}",
                     "Check the kernel headers (`ls -l /lib/modules/$(uname -r)/build`) and "
                     f"rerun `{SETUP_HINT}`; run scripts/check-bpf.sh for the full log.")
    program.cleanup()
    return Check("compile", OK, "compiled, loaded and attached a raw_syscalls:sys_enter raw "
                 "tracepoint program")


def _not_asked() -> Check:
    return Check("compile", SKIPPED, "not asked")


def _bpf_map_create(map_type: int, key_size: int, value_size: int, max_entries: int) -> int:
    """0 if the kernel creates (then we close) such a map, else the errno."""
    attr = ctypes.create_string_buffer(
        struct.pack("<IIII", map_type, key_size, value_size, max_entries), 128)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(BPF_SYSCALL_X86_64, BPF_MAP_CREATE, attr, ctypes.c_uint(128))
    if fd < 0:
        return ctypes.get_errno()
    os.close(fd)
    return 0
