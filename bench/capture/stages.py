"""Where a captured event's user-space time goes: decode + enrich, build Arrow, spool, Parquet.

Loads the capture program (default preset), runs a short load (an open/close loop and a shell
loop of short processes; --load tar: a tar of /usr/include, every file a new path) while the
ring buffer fills, then replays the recorded ring-buffer bytes
through each stage of `capture record` several times and prints the best time per event of each.
The capture loop (one thread) decodes and enriches in one pass (`Enricher.feed_chunk`), builds
its compact Arrow batch (capture/compact.py) and appends it to the spool; the sum of those bounds
the rate it can sustain. The general path (`decode`, then `Enricher.feed` of the Records), which
the fast one must match, is shown too. The trace rows are expanded and the Parquet file written
from the spool when a segment ends, in a worker process (bench/capture/convert.py measures that
on a real spool). Use it to see which stage a change speeds up (bench/bench_capture.py measures
the whole capture).

Usage (root, from the repository root):
    .venv/bin/python bench/capture/stages.py [--repeat 3] [--load mixed|tar]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from capture.bpf_render import DEFAULT_SYSCALLS, ProgramOptions  # noqa: E402
from capture.enrich import Enricher  # noqa: E402
from capture.probe import Probe, Record, decode, detect_features, tracefs_root  # noqa: E402
from capture.record import Segment  # noqa: E402
from capture.rows import RowBatch  # noqa: E402
from capture.trace_writer import TraceWriter  # noqa: E402
from schemas.trace import SOURCE_LIVE, TraceMeta  # noqa: E402

LOAD = Path(__file__).with_name("load.py")
SHELL_LOOP = "for i in $(seq 100); do cat /etc/hostname >/dev/null; ls /tmp >/dev/null; done"
# --load tar: a tree copy, every file a new path (nothing the capture memoises applies).
TAR = "tar -cf - /usr/include 2>/dev/null | cat >/dev/null"


def record_chunks(load: str) -> list[bytes]:
    """The ring buffer's bytes while the load runs (32 MiB ring: nothing is dropped)."""
    tracefs = tracefs_root()
    if tracefs is None:
        sys.exit("tracefs is not mounted; run `capture doctor --fix`.")
    features = detect_features(tracefs)
    options = ProgramOptions(syscalls=DEFAULT_SYSCALLS, self_tgid=os.getpid(),
                             has_group_dead=features.has_group_dead,
                             local_endpoints=features.local_endpoints)
    chunks = []
    with Probe(options) as probe:
        assert probe.ring is not None
        if load == "tar":
            subprocess.run(["bash", "-c", TAR], check=True)
        else:
            subprocess.run([sys.executable, str(LOAD), "0", "0.3"], check=True,
                           stdout=subprocess.DEVNULL)
            subprocess.run(["bash", "-c", SHELL_LOOP], check=True)
        while chunk := probe.ring.read():
            used = decode(chunk)[1]
            chunks.append(chunk[:used])
            probe.ring.consume(used)
        if sum(probe.counters().values()):
            sys.exit(f"events were dropped while recording: {probe.counters()}")
    return chunks


def best(repeat: int, run: Callable[[], object]) -> float:
    """The best wall time of `repeat` runs (the GC collected before each, off during)."""
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
        gc.enable()
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--load", choices=("mixed", "tar"), default="mixed",
                        help="mixed: an open/close loop and short processes; tar: a tree copy")
    args = parser.parse_args()
    chunks = record_chunks(args.load)
    records: list[Record] = [r for c in chunks for r in decode(c)[0]]
    enricher = Enricher(time.time_ns() - time.monotonic_ns())
    enricher.snapshot()
    batch = RowBatch()

    def feed() -> None:
        nonlocal batch
        batch = RowBatch()
        enricher.feed(records, batch)

    def feed_chunks() -> None:
        nonlocal batch
        batch = RowBatch()
        for chunk in chunks:
            enricher.feed_chunk(chunk, batch)

    def spool() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            segment = Segment(Path(tmp) / "t.parquet", TraceMeta(source=SOURCE_LIVE))
            segment.write(batch.to_spool())
            segment.seal()

    def parquet() -> None:
        with tempfile.TemporaryDirectory() as tmp, \
                TraceWriter(Path(tmp) / "t.parquet", TraceMeta(source=SOURCE_LIVE)) as writer:
            writer.write(table)
            writer.close()

    general = (best(args.repeat, lambda: [decode(c) for c in chunks])
               + best(args.repeat, feed))
    loop = {"decode + enrich (feed_chunk)": best(args.repeat, feed_chunks)}
    table = batch.to_table()
    loop["compact batch (RowBatch.to_spool)"] = best(args.repeat, batch.to_spool)
    loop["spool (Arrow IPC, lz4, fsync)"] = best(args.repeat, spool)
    n = len(batch)
    print(f"{len(records):,} records, {n:,} events, best of {args.repeat}:")
    for name, seconds in loop.items():
        print(f"  {name:36} {seconds / n * 1e6:6.2f} us/event")
    total = sum(loop.values()) / n
    print(f"  {'capture loop':36} {total * 1e6:6.2f} us/event = {1 / total:,.0f} events/s")
    print(f"  {'(general path: decode, Enricher.feed)':36} {general / n * 1e6:6.2f} us/event")
    print("At segment end, in the conversion worker:")
    print(f"  {'trace rows (compact.expand)':36} "
          f"{best(args.repeat, batch.to_table) / n * 1e6:6.2f} us/event")
    print(f"  {'Parquet (TraceWriter)':36} "
          f"{best(args.repeat, parquet) / n * 1e6:6.2f} us/event")


if __name__ == "__main__":
    main()
