"""Segment conversion in the worker process (capture/convert_worker.py): the trace it writes is
the one converting in the capture's own process writes, its failures are raised as those would
be, a worker killed mid-way fails that segment only (its spool stays for `capture recover`),
and the end of a capture reports the segments still converting."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from compact_batches import META, write_spool

from capture.convert_worker import ConversionError, Converter, Job
from capture.record import (
    RecordOptions,
    RecordProgress,
    _Loop,
    _Output,
    recover_spool,
    spool_to_trace,
)
from capture.trace_writer import TraceWriteError

DROPS = {"ringbuf_full": 2, "enrich_errors": 0}


@pytest.fixture
def converter() -> Iterator[Converter]:
    conv = Converter()
    yield conv
    conv.close()


def in_both(tmp_path: Path, sizes: list[int], finished: bool = True,
            row_group_rows: int = 64) -> tuple[Path, Path]:
    """The same spool converted here and in the worker: the two traces."""
    here = write_spool(tmp_path / "here.parquet", sizes, finished)
    there = here.with_name("there.parquet.spool")
    shutil.copy(here, there)
    mine = spool_to_trace(here, tmp_path / "here.parquet", META, DROPS, row_group_rows)
    conv = Converter()
    try:
        theirs = conv.convert(Job(there, tmp_path / "there.parquet", META, DROPS,
                                  row_group_rows))
    finally:
        conv.close()
    assert theirs == mine
    assert not here.exists() and not there.exists()  # removed once the trace was written
    return tmp_path / "here.parquet", tmp_path / "there.parquet"


@pytest.mark.parametrize("finished", [True, False])
def test_the_worker_writes_the_trace_written_in_process(tmp_path: Path, finished: bool) -> None:
    here, there = in_both(tmp_path, [150, 1, 300], finished)
    a, b = pq.ParquetFile(here), pq.ParquetFile(there)
    assert a.metadata.metadata == b.metadata.metadata  # counts, drops, time range, options
    assert a.metadata.num_row_groups == b.metadata.num_row_groups > 1
    assert a.read().equals(b.read())
    assert a.read().num_rows == 451  # a spool cut short keeps every batch written whole
    assert oct(there.stat().st_mode & 0o777) == "0o600"


def test_a_spool_cut_before_its_first_batch_gives_an_empty_trace(tmp_path: Path) -> None:
    here, there = in_both(tmp_path, [], finished=False)
    assert pq.read_table(there).num_rows == pq.read_table(here).num_rows == 0


def raised(call: Any) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("nothing raised")


@pytest.mark.parametrize("case", ["unwritable trace", "missing spool"])
def test_errors_are_raised_as_in_process(tmp_path: Path, converter: Converter,
                                         case: str) -> None:
    spool = write_spool(tmp_path / "s.parquet", [10])
    if case == "missing spool":
        spool.unlink()
    dst = tmp_path / ("no-such-dir" if case == "unwritable trace" else "") / "t.parquet"
    theirs = raised(lambda: converter.convert(Job(spool, dst, META, DROPS, 64)))
    mine = raised(lambda: spool_to_trace(spool, dst, META, DROPS, 64))
    assert type(theirs) is type(mine) and str(theirs) == str(mine)
    if case == "unwritable trace":
        assert isinstance(theirs, TraceWriteError) and spool.exists()
    # the worker goes on with the next segment
    assert converter.convert(Job(spool if spool.exists() else write_spool(
        tmp_path / "n.parquet", [10]), tmp_path / "n.parquet", META, DROPS, 64)).events == 10


def test_a_worker_killed_mid_segment_fails_that_segment_only(tmp_path: Path,
                                                             converter: Converter) -> None:
    # Many small row groups: the conversion lasts long enough to be killed mid-way.
    spool = write_spool(tmp_path / "k.parquet", [20_000] * 5)
    dst, tmp = tmp_path / "k.parquet", tmp_path / "k.parquet.tmp"
    failed: list[BaseException] = []

    def convert() -> None:
        try:
            converter.convert(Job(spool, dst, META, DROPS, 100))
        except ConversionError as exc:
            failed.append(exc)

    thread = threading.Thread(target=convert)
    thread.start()
    deadline = time.monotonic() + 30
    while not tmp.exists():  # the trace is being written
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.002)
    worker = converter._worker
    assert worker is not None
    os.kill(worker.pid, signal.SIGKILL)
    thread.join(30)
    assert str(failed[0]) == (
        f"The conversion of {spool} into a trace stopped: its process ended (killed by "
        f"SIGKILL). The spool is kept: turn it into a trace with `capture recover {spool}`.")
    assert spool.exists() and not dst.exists() and not tmp.exists()
    # a new worker converts the next segment; the spool is recovered whole
    other = write_spool(tmp_path / "o.parquet", [10])
    assert converter.convert(Job(other, tmp_path / "o.parquet", META, DROPS, 64)).events == 10
    assert recover_spool(spool).events == 100_000


def test_a_worker_dead_between_segments_is_replaced(tmp_path: Path,
                                                    converter: Converter) -> None:
    converter.start()
    worker = converter._worker
    assert worker is not None
    worker.kill()
    worker.wait()
    spool = write_spool(tmp_path / "n.parquet", [10])
    assert converter.convert(Job(spool, tmp_path / "n.parquet", META, DROPS, 64)).events == 10
    assert converter._worker is not worker


def test_the_end_reports_the_segments_still_converting(tmp_path: Path) -> None:
    options = RecordOptions(rotate_seconds=1.0, flush_seconds=0.05)
    out = _Output(tmp_path / "out", options, META, segmented=True)
    worker = out._converter._worker
    assert worker is not None
    os.kill(worker.pid, signal.SIGSTOP)  # the conversion waits until the test lets it go on
    spool = write_spool(tmp_path / "out" / "segment-00001.parquet", [10])
    out.paths.append(spool.with_suffix(""))
    out.done.append(out._pool.submit(out._converter.convert, Job(
        spool, spool.with_suffix(""), META, DROPS, 64)))
    shown: list[RecordProgress] = []
    loop = _Loop(None, None, out, options, shown.append, threading.Event())  # type: ignore
    loop.enricher = type("Enricher", (), {"table_only": 0})()  # type: ignore[assignment]
    loop.events, loop.drops_at_segment = 10, DROPS

    def go_on() -> None:
        while len(shown) < 3:
            time.sleep(0.01)
        os.kill(worker.pid, signal.SIGCONT)

    thread = threading.Thread(target=go_on)
    thread.start()
    try:
        loop.wait_conversions()
    finally:
        thread.join(30)
        loop.spooler.shutdown()
    metas = out.close()
    assert [m.events for m in metas] == [10]
    assert len(shown) >= 3
    assert {(p.capturing, p.converting, p.events, p.dropped) for p in shown} == {(False, 1, 10, 2)}
