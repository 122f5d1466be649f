"""Record scenarios (capture/scenarios.py) live: one capture session, one trace per scenario.

How a session goes:
1. Every scenario's root process is forked first, while this process has no other thread: it
   names itself (`Scenario.comm`), takes a terminal if asked, says it is set up, and waits on a
   pipe. The capture's process snapshot, taken next, thus knows each root as it will act.
2. Loopback listeners, the container sandboxes' cgroups and a stand-in Docker Engine API (for
   container names and images) are made; the capture starts in a thread (`record()`), following
   only the roots' process trees (`RecordOptions.follow_pids`), and says when its probe is
   attached (`ready`).
3. Scenario by scenario: tell the root to act, wait for it to exit, then cut the capture's
   segment (`SegmentCut`), so each segment holds exactly one scenario. The segments become
   `OUT/NAME.parquet`.
Whatever happens, leftover roots are killed, sandboxes and scratch files removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import tempfile
import termios
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from capture import scenario_actions as act
from capture.container_runtime import ContainerInfo, serve_engine_api
from capture.container_sandbox import ContainerSandbox
from capture.record import RecordOptions, RecordStats, SegmentCut, record
from capture.scenario_listeners import listeners_for
from capture.scenarios import Scenario
from schemas.trace import TraceError

ROOT_TIMEOUT = 60.0  # seconds a scenario may take
START_TIMEOUT = 120.0  # seconds the capture may take to attach (BCC compiles the program)
TAIL_SECONDS = 0.1  # after a root exits, before its segment is cut


class ScenarioError(TraceError):
    """A scenario session that cannot run (not root, no capture); the message says why. A
    behaviour that fails is not one: its result says so (`ScenarioResult.error`)."""


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    trace: Path
    events: int
    error: str | None = None  # why the behaviour failed (its trace is still written)
    container_id: str | None = None  # the sandbox's full id, for container scenarios

    @property
    def ok(self) -> bool:
        return self.error is None


def run_scenarios(scenarios: Sequence[Scenario], output: Path | str) -> list[ScenarioResult]:
    """Record each scenario into `output/NAME.parquet` (needs root and BPF)."""
    if os.geteuid() != 0:
        raise ScenarioError("Recording scenarios needs root (eBPF capture, cgroups, namespaces).")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    segments = out / f".segments-{secrets.token_hex(4)}"
    errors: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sysreplay-")))
        scratch.chmod(0o711)  # each scenario's directory is private; one runs a user's command
        listeners = stack.enter_context(listeners_for(scenarios))
        sandboxes = {s.name: stack.enter_context(_sandbox(s)) for s in scenarios if s.container}
        roots = stack.enter_context(_Roots(scenarios, scratch, sandboxes, listeners.ports))
        listeners.start()
        runtime = _stand_in_runtime(stack, list(sandboxes.values()), scratch)
        options = RecordOptions(follow_pids=roots.pids, flush_seconds=0.2,
                                runtime_sockets=runtime)
        session = stack.enter_context(_Capture(options, segments))
        for i, scenario in enumerate(scenarios):
            if error := roots.act(scenario.name):
                errors[scenario.name] = error
            time.sleep(TAIL_SECONDS)
            if i < len(scenarios) - 1:
                session.cut.cut()
    ids = {name: box.id for name, box in sandboxes.items()}
    return _collect(scenarios, session.stats, segments, out, errors, ids)


def _collect(scenarios: Sequence[Scenario], stats: RecordStats | None, segments: Path, out: Path,
             errors: dict[str, str], ids: dict[str, str]) -> list[ScenarioResult]:
    """Each scenario's segment renamed to OUT/NAME.parquet, in order."""
    assert stats is not None
    if len(stats.outputs) != len(scenarios):
        raise ScenarioError(f"The capture wrote {len(stats.outputs)} segments for "
                            f"{len(scenarios)} scenarios; they are left in {segments}.")
    results = []
    for scenario, segment in zip(scenarios, stats.outputs, strict=True):
        target = out / f"{scenario.name}.parquet"
        os.replace(segment, target)
        events = pq.ParquetFile(target).metadata.num_rows
        results.append(ScenarioResult(scenario, target, events, errors.get(scenario.name),
                                      ids.get(scenario.name)))
    shutil.rmtree(segments, ignore_errors=True)
    return results


# ---- the capture thread ----------------------------------------------------------------------

class _Capture:
    """`record()` in a thread; entering waits until its probe is attached."""

    def __init__(self, options: RecordOptions, output: Path) -> None:
        self.options, self.output = options, output
        self.stop, self.ready, self.cut = threading.Event(), threading.Event(), SegmentCut()
        self.stats: RecordStats | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="scenario-capture")

    def _run(self) -> None:
        try:
            self.stats = record(self.options, self.output, stop=self.stop, ready=self.ready,
                                cut=self.cut)
        except BaseException as exc:  # re-raised in the caller's thread
            self.error = exc
            self.ready.set()

    def __enter__(self) -> _Capture:
        self.thread.start()
        if not self.ready.wait(START_TIMEOUT):
            self.stop.set()
            raise ScenarioError(f"The capture did not start within {START_TIMEOUT:.0f} s.")
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        if self.error is not None:
            raise self.error


# ---- the roots -------------------------------------------------------------------------------

@dataclass
class _Root:
    pid: int
    go: int  # write end: one byte tells the root to act
    report: int  # read end: b"r" once set up, then the error text if the action failed
    started: float


class _Roots:
    """The scenarios' root processes, forked and waiting; a context manager that kills any left."""

    def __init__(self, scenarios: Sequence[Scenario], scratch: Path,
                 sandboxes: dict[str, ContainerSandbox], ports: dict[str, int]) -> None:
        self.roots: dict[str, _Root] = {}
        try:
            for scenario in scenarios:
                directory = scratch / scenario.name
                directory.mkdir(mode=0o700)
                ctx = act.ActionContext(directory, sandboxes.get(scenario.name), dict(ports))
                inherited = [fd for r in self.roots.values() for fd in (r.go, r.report)]
                self.roots[scenario.name] = _fork_root(scenario, ctx, inherited)
            for name, root in self.roots.items():  # all set up before the capture's snapshot
                if os.read(root.report, 1) != b"r":
                    raise ScenarioError(f"The root process of scenario {name} could not set "
                                        "up: " + _read_all(root.report))
        except BaseException:
            self.__exit__()
            raise

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(r.pid for r in self.roots.values())

    def __enter__(self) -> _Roots:
        return self

    def __exit__(self, *exc: object) -> None:
        for root in self.roots.values():
            _close(root.go)
            _close(root.report)
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(root.pid, 9)
                os.waitpid(root.pid, 0)

    def act(self, name: str) -> str | None:
        """Let the root act and wait for its exit; the error, if its action failed."""
        root = self.roots.pop(name)
        os.write(root.go, b"g")
        _close(root.go)
        status = _wait(root.pid, ROOT_TIMEOUT)
        message = _read_all(root.report)
        _close(root.report)
        if status is None:
            return f"did not finish within {ROOT_TIMEOUT:.0f} s (killed)"
        return message or (f"exited with status {status}" if status else None)


def _fork_root(scenario: Scenario, ctx: act.ActionContext, inherited: list[int]) -> _Root:
    """Fork a root; `inherited` are the other roots' pipe ends, which it closes."""
    go_r, go_w = os.pipe()
    report_r, report_w = os.pipe()
    started = time.monotonic()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process with threads (a test harness may have
        # some): the child runs only the action's own code and leaves through os._exit.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the root: never returns
        for fd in (go_w, report_r, *inherited):
            os.close(fd)
        _root_main(scenario, ctx, go_r, report_w, started)
    os.close(go_r)
    os.close(report_w)
    return _Root(pid, go_w, report_r, started)


def _root_main(scenario: Scenario, ctx: act.ActionContext, go: int, report: int,
               started: float) -> None:
    status = 1
    try:
        _close_inherited(keep={0, 1, 2, go, report})
        act.set_comm(scenario.comm)
        if scenario.tty:
            _take_terminal()
        os.write(report, b"r")
        if os.read(go, 1) == b"g":  # EOF: the runner gave up
            time.sleep(max(0.0, started + scenario.min_age - time.monotonic()))
            scenario.action(ctx)
            status = 0
    except BaseException as exc:
        text = str(exc) if isinstance(exc, act.ActionError) else traceback.format_exc(limit=3)
        with contextlib.suppress(OSError):
            os.write(report, text.strip().encode(errors="replace")[:2000])
    finally:
        os._exit(status)


def _close_inherited(keep: set[int]) -> None:
    """Close what the root inherited from the runner (listening sockets, the test harness's
    files): the capture's snapshot of the root's fds, taken next, then holds only its own, and
    a stale inherited entry cannot stand for a descendant's pipe that reuses the number."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            _close(int(name))


def _take_terminal() -> None:
    """A new session with a pseudo-terminal as its controlling terminal (kept open)."""
    os.setsid()
    _master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)


def _wait(pid: int, timeout: float) -> int | None:
    """The exit status of child `pid`, or None if it had to be killed after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


def _read_all(fd: int) -> str:
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


# ---- what the scenarios talk to ----------------------------------------------------------------

@contextlib.contextmanager
def _sandbox(scenario: Scenario) -> Iterator[ContainerSandbox]:
    assert scenario.container is not None
    spec = scenario.container
    with ContainerSandbox(f"sr-{scenario.name}", spec.image, net=spec.net,
                          privileged=spec.privileged) as box:
        yield box


def _stand_in_runtime(stack: contextlib.ExitStack, sandboxes: list[ContainerSandbox],
                      scratch: Path) -> tuple[str, ...]:
    """Serve the sandboxes' names and images over a Docker Engine API socket: the sockets
    the capture is to ask (only this one: the machine's own engines know none of them)."""
    path = scratch / "docker.sock"
    infos = {b.id: ContainerInfo(id=b.id, name=b.name, image=b.image, privileged=b.privileged)
             for b in sandboxes}
    stack.enter_context(serve_engine_api(path, infos))
    return (str(path),)
