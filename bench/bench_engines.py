"""Benchmark: both engines over a large trace with the upstream stable rules, next to sysdig.

Builds a trace of at least --events rows by importing the shared k8s capture once and
replicating it (evt.num and evt.time shifted per copy, so every row is distinct and ordered),
then, each in a fresh process so peak memory is its own:
- `sql` and `replay`: run every applicable upstream stable rule (plus rules/) with rule_matching
  "all", print events/s and peak RSS;
- `sysdig -r k8s.scap -p %evt.num FILTER`: one Falco-like filter over the original capture.

Usage (from the repository root):
    .venv/bin/python bench/bench_engines.py [--events 10000000] [--work /tmp/sysreplay-bench]

Targets on the 2-core reference machine (issue #3): SQL >= 20M events/s, replay >= 2M events/s,
peak memory < 1 GB regardless of trace size.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ROOT.parent / "shared" / "anchors"
K8S_SCAP = ANCHORS / "scap" / "bencer_k8s__capture.scap"
STABLE = ANCHORS / "falco-rules" / "rules" / "falco_rules.yaml"
SYSDIG_FILTER = (
    "evt.type in (open, openat, openat2) and evt.dir = < and fd.typechar = f "
    "and (fd.name startswith /etc or proc.name in (bash, sh, curl))"
)


def build_trace(work: Path, min_events: int) -> tuple[Path, int]:
    """The k8s capture imported once, then replicated into row groups of one big file."""
    from capture.scap_import import import_scap

    work.mkdir(parents=True, exist_ok=True)
    base = work / "k8s.parquet"
    if not base.exists():
        import_scap(K8S_SCAP, base)
    table = pq.read_table(base)
    copies = -(-min_events // table.num_rows)
    big = work / f"k8s_x{copies}.parquet"
    if big.exists():
        return big, pq.ParquetFile(big).metadata.num_rows
    nums = table.column("evt.num").cast(pa.int64())
    times = table.column("evt.time").cast(pa.int64())
    span_num = pc.max(nums).as_py() - pc.min(nums).as_py() + 1
    span_time = pc.max(times).as_py() - pc.min(times).as_py() + 1
    meta = _replicated_metadata(base, copies, table.num_rows, span_time)
    schema = table.schema.with_metadata(meta)
    num_i, time_i = schema.get_field_index("evt.num"), schema.get_field_index("evt.time")
    tmp = big.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for i in range(copies):
            part = table.set_column(
                num_i, "evt.num", pc.add(nums, i * span_num).cast(schema.field(num_i).type)
            ).set_column(
                time_i, "evt.time", pc.add(times, i * span_time).cast(schema.field(time_i).type)
            )
            writer.write_table(part.replace_schema_metadata(meta), row_group_size=65536)
    tmp.rename(big)
    return big, copies * table.num_rows


def _replicated_metadata(
    base: Path, copies: int, rows: int, span_time: int
) -> dict[bytes, bytes]:
    """The base file's metadata with the event count and end time of the replicated file."""
    from schemas.trace import META_PREFIX

    meta = {k: v for k, v in (pq.ParquetFile(base).metadata.metadata or {}).items()
            if not k.startswith(b"ARROW:")}
    meta[f"{META_PREFIX}events".encode()] = str(copies * rows).encode()
    end_key = f"{META_PREFIX}capture_end_ns".encode()
    if meta.get(end_key):
        meta[end_key] = str(int(meta[end_key]) + (copies - 1) * span_time).encode()
    return meta


def run_engine(engine: str, trace: Path) -> dict[str, float]:
    """Runs in a child process: load rules, run the engine once, report time and peak RSS."""
    import importlib

    from analyze.engine_api import RunOptions, selected_rules
    from analyze.resolve import load_rules
    from analyze.run import ENGINE_MODULES

    rules, _ = selected_rules(load_rules([STABLE, ROOT / "rules"]), RunOptions(rule_matching="all"))
    module = importlib.import_module(ENGINE_MODULES[engine])
    cls = next(getattr(module, n) for n in dir(module) if n.endswith("Engine") and n != "Engine")
    start = time.perf_counter()
    matches = cls().run([str(trace)], rules, RunOptions(rule_matching="all"))
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "matches": len(matches), "rules": len(rules),
            "peak_mb": peak_kb / 1024}


def run_sysdig() -> dict[str, float]:
    sysdig = shutil.which("sysdig")
    if sysdig is None:
        return {}
    start = time.perf_counter()
    out = subprocess.run([sysdig, "-r", str(K8S_SCAP), "-p", "%evt.num", SYSDIG_FILTER],
                         capture_output=True, text=True, check=True).stdout
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "matches": len(out.split()), "events": 143904}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/sysreplay-bench"))
    ap.add_argument("--engines", default="sql,replay")
    ap.add_argument("--child", nargs=2, metavar=("ENGINE", "TRACE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_engine(args.child[0], Path(args.child[1]))))
        return
    trace, events = build_trace(args.work, args.events)
    print(f"trace: {trace} ({events:,} events, {trace.stat().st_size / 1e6:.0f} MB)")
    print(f"{'engine':<10}{'events/s':>16}{'seconds':>10}{'peak MB':>10}{'matches':>10}")
    for engine in args.engines.split(","):
        proc = subprocess.run([sys.executable, __file__, "--child", engine, str(trace)],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(f"{engine:<10} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{engine:<10}{events / r['seconds']:>16,.0f}{r['seconds']:>10.2f}"
              f"{r['peak_mb']:>10.0f}{r['matches']:>10,}  ({r['rules']:.0f} rules)")
    s = run_sysdig()
    if s:
        print(f"{'sysdig':<10}{s['events'] / s['seconds']:>16,.0f}{s['seconds']:>10.2f}"
              f"{'-':>10}{s['matches']:>10,}  (one filter, original 143,904-event capture)")


if __name__ == "__main__":
    main()
