"""Enrichment cost per event, comparable between two versions of the code.

`--record FILE` loads the capture program (default preset), runs the load of stages.py (an
open/close loop and a shell loop of short processes) and saves the ring buffer's bytes to FILE
(needs root). `--replay FILE` feeds the same records through `Enricher.feed_chunk` (older code:
`decode` then `Enricher.feed`) and `RowBatch.to_table` of the code under `--code DIR` (default:
this repository) and prints the best CPU time per event
(CPU time, not wall time: other processes on the machine inflate wall time more). Replaying one
FILE with two code trees compares them on identical input:

    sudo .venv/bin/python bench/capture/enrich_replay.py --record /tmp/chunks.bin
    git archive HEAD | tar -x -C /tmp/base
    .venv/bin/python bench/capture/enrich_replay.py --replay /tmp/chunks.bin --code /tmp/base
    .venv/bin/python bench/capture/enrich_replay.py --replay /tmp/chunks.bin
    .venv/bin/python bench/capture/enrich_replay.py --replay /tmp/chunks.bin --container host

`--container` (repeatable) measures a `capture record --container` selection (needs the code to
have it). A FILE holds records in the layout of the program that recorded it (struct rec_hdr in
capture/bpf_program.c): replay it with code of the same layout (`capture.probe.encode` rewrites
decoded records in the current one).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def best_cpu(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        start = time.thread_time()
        run()
        times.append(time.thread_time() - start)
        gc.enable()
    return min(times)


def record(path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench" / "capture"))
    sys.path.insert(0, str(ROOT))
    import stages  # the load and the ring-buffer copy of stages.py

    chunks = stages.record_chunks()
    path.write_bytes(pickle.dumps(chunks))
    print(f"{sum(len(c) for c in chunks):,} bytes of records in {path}")


def replay(path: Path, code: Path, repeat: int, containers: tuple[str, ...]) -> None:
    sys.path.insert(0, str(code))
    from capture.enrich import Enricher
    from capture.probe import decode
    from capture.rows import RowBatch

    chunks = pickle.loads(path.read_bytes())
    n = sum(len(decode(c)[0]) for c in chunks)
    kw: dict[str, Any] = {"containers": containers} if containers else {}
    enricher = Enricher(time.time_ns() - time.monotonic_ns(), **kw)
    enricher.snapshot()
    out: dict[str, Any] = {}
    fused = hasattr(enricher, "feed_chunk")  # older code: decode, then feed the Records

    def feed() -> None:
        out["batch"] = batch = RowBatch()
        for chunk in chunks:
            if fused:
                enricher.feed_chunk(chunk, batch)
            else:
                enricher.feed(decode(chunk)[0], batch)

    enrich = best_cpu(repeat, feed)
    rows = len(out["batch"])
    arrow = best_cpu(repeat, out["batch"].to_table) if rows else 0.0
    print(f"{code}: {n:,} records, {rows:,} rows, best of {repeat} (CPU time):")
    print(f"  decode + enrich                   {enrich / n * 1e6:6.2f} us/record")
    if rows:
        print(f"  rows to Arrow (RowBatch.to_table) {arrow / rows * 1e6:6.2f} us/row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", type=Path)
    group.add_argument("--replay", type=Path)
    parser.add_argument("--code", type=Path, default=ROOT)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--container", action="append", default=[])
    args = parser.parse_args()
    if args.record:
        record(args.record)
    else:
        replay(args.replay, args.code, args.repeat, tuple(args.container))


if __name__ == "__main__":
    main()
