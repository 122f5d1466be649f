"""Segment conversion in a process of its own: a finished spool becomes its Parquet trace there.

Why a process: converting a spool (compact.expand, then TraceWriter) costs about 2 us/event, in
Python and in Arrow calls that hold the GIL (Parquet's `write_table` for a whole row group). In
a thread of the capture process it took the GIL from the loop that drains the ring buffer, and
a rotating capture kept up with only ~230k events/s. The worker is a child started with
`subprocess` (fork and exec at once: the capture process holds BPF fds and threads, which a
bare fork would copy), in a process group of its own (Ctrl-C at the terminal stops the capture,
which then waits for its conversions: the worker must not be interrupted with it), and at a
lower CPU priority (`WORKER_NICE`): on a busy machine the capture and the traced programs go
first, as the loop's work cannot wait (the ring buffer fills in seconds) and the conversions'
can (finished spools wait on disk, a third of the size of their traces). Not in a session of
its own: with the scheduler's autogroups (one per session) a niced worker in its own session
would still get a whole group's share of the CPU against the capture's.

Protocol: one JSON line per job on the worker's stdin (spool, trace, metadata, drop counters,
row group size), one JSON line per job back on its stdout: the trace's metadata, or the error.
Jobs run one at a time, in order; the worker ends when its stdin closes, after the job at hand
(so also when the capture dies: the segments it had not handed over keep their spools). Crash
safety is `spool_to_trace`'s: the trace is renamed into place complete and the spool removed
after, so a worker killed midway leaves the spool for `capture recover`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from schemas.trace import TraceError, TraceMeta

WORKER_NICE = 19  # CFS weight 15 against the capture's 1024: ~1.5% of a core they share
ROOT = Path(__file__).resolve().parents[1]  # the directory holding the `capture` package


class ConversionError(TraceError):
    """A segment's conversion did not finish: its process ended or failed."""


@dataclass(frozen=True)
class Job:
    """Convert `spool` into the trace `dst` (see record.spool_to_trace)."""

    spool: Path
    dst: Path
    meta: TraceMeta
    drops: dict[str, int] | None
    row_group_rows: int

    def to_json(self) -> str:
        return json.dumps({"spool": str(self.spool), "dst": str(self.dst),
                           "meta": self.meta.to_kv(), "drops": self.drops,
                           "row_group_rows": self.row_group_rows})

    @staticmethod
    def from_json(line: str) -> Job:
        data = json.loads(line)
        return Job(Path(data["spool"]), Path(data["dst"]), TraceMeta.from_kv(data["meta"]),
                   data["drops"], data["row_group_rows"])


class Converter:
    """The capture's side: runs jobs in the worker, one at a time (from one thread).

    A worker that died between jobs is replaced; one that dies during a job fails that job only
    (its spool stays, for `capture recover`)."""

    def __init__(self) -> None:
        self._worker: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start the worker now (it takes a fraction of a second to import pyarrow)."""
        if self._worker is not None and self._worker.poll() is not None:
            _end(self._worker)  # died between jobs: no job lost, a new worker takes the next
            self._worker = None
        if self._worker is None:
            path = os.environ.get("PYTHONPATH")
            env = {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}
            self._worker = subprocess.Popen(
                [sys.executable, "-m", "capture.convert_worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, env=env, process_group=0)

    def convert(self, job: Job) -> TraceMeta:
        """Run `job` in the worker; its error is raised here as the worker raised it."""
        self.start()
        worker = self._worker
        assert worker is not None and worker.stdin is not None and worker.stdout is not None
        try:
            worker.stdin.write(job.to_json() + "\n")
            worker.stdin.flush()
            line = worker.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self._worker = None
            raise self._died(job, worker)
        return _result(job, json.loads(line))

    def close(self) -> None:
        """End the worker (after its current job, if any: it converts nothing half-way)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            _end(worker)

    @staticmethod
    def _died(job: Job, worker: subprocess.Popen[str]) -> ConversionError:
        status = _end(worker)
        how = (f"killed by {signal.Signals(-status).name}" if status < 0
               else f"exit status {status}")
        with suppress(OSError):  # its half-written trace (the spool holds the events)
            job.dst.with_name(job.dst.name + ".tmp").unlink()
        return ConversionError(
            f"The conversion of {job.spool} into a trace stopped: its process ended ({how}). "
            f"The spool is kept: turn it into a trace with `capture recover {job.spool}`.")


def _end(worker: subprocess.Popen[str]) -> int:
    """Close the worker's stdin (it ends once its job is done), wait for it; its status."""
    assert worker.stdin is not None and worker.stdout is not None
    with suppress(BrokenPipeError):
        worker.stdin.close()
    status = worker.wait()
    worker.stdout.close()
    return status


def _result(job: Job, reply: dict[str, Any]) -> TraceMeta:
    if "meta" in reply:
        return TraceMeta.from_kv(reply["meta"])
    kind, message = reply["kind"], reply["error"]
    if kind == "OSError":
        if reply["errno"] is None:  # Arrow's I/O errors often have none
            raise OSError(message)
        raise OSError(reply["errno"], reply["strerror"], reply["filename"])
    error = _trace_errors().get(kind)
    if error is not None:
        raise error(message)
    raise ConversionError(f"The conversion of {job.spool} into a trace failed:\n{message}")


def _trace_errors() -> dict[str, type[TraceError]]:
    """TraceError and its subclasses by name (RecordError, TraceWriteError...)."""
    found: dict[str, type[TraceError]] = {}
    todo: list[type[TraceError]] = [TraceError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


# ---- the worker -----------------------------------------------------------------------------

def run_job(job: Job) -> dict[str, Any]:
    """Convert, and say how it went as a JSON-able reply."""
    from capture.record import spool_to_trace

    try:
        meta = spool_to_trace(job.spool, job.dst, job.meta, job.drops, job.row_group_rows)
    except TraceError as exc:
        return {"kind": type(exc).__name__, "error": str(exc)}
    except OSError as exc:
        return {"kind": "OSError", "error": str(exc), "errno": exc.errno,
                "strerror": exc.strerror, "filename": exc.filename}
    except Exception:
        return {"kind": "crash", "error": traceback.format_exc()}
    return {"meta": meta.to_kv()}


def main() -> None:
    os.nice(WORKER_NICE)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the capture decides when the worker ends
    # Replies go to the original stdout; anything printed goes to stderr instead.
    replies: IO[str] = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    for line in sys.stdin:
        reply = json.dumps(run_job(Job.from_json(line)))
        try:
            replies.write(reply + "\n")
            replies.flush()
        except BrokenPipeError:  # the capture is gone; the trace is written anyway
            os._exit(0)  # not an exit that would flush the reply to the closed pipe again


if __name__ == "__main__":
    main()
