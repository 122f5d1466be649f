"""Benchmark: both engines over a large trace with the upstream stable rules, next to sysdig.

Builds a trace of at least --events rows by importing the shared k8s capture once and
replicating it through the project's TraceWriter (evt.num and evt.time shifted per copy, so every
row is distinct and ordered), then, each in a fresh process so peak memory is its own:
- `sql` and `replay`: run every applicable upstream stable rule (plus rules/) with rule_matching
  "all", print events/s, CPU seconds (all threads; steadier than the wall clock on a shared
  machine) and peak RSS;
- `scan`: the SQL engine's first scan alone, no rule evaluated (its floor on this trace);
- `sysdig -r k8s.scap -p %evt.num FILTER`: one Falco-like filter over the original capture.

Usage (from the repository root):
    .venv/bin/python bench/bench_engines.py [--events 10000000] [--work /tmp/sysreplay-bench]
        [--engines sql,replay,scan]

Targets on the 2-core reference machine (issue #3): SQL >= 20M events/s, replay >= 2M events/s,
peak memory < 1 GB regardless of trace size.

Measured there (shared with another job that kept one core busy most of the time; 6 runs each,
CPU seconds vary less than wall), on the trace the writer makes (rows of each row group
clustered by event type, 128k-row groups; 160 MB, 15.9 bytes/event): SQL 0.66 s (0.66 s CPU),
15.2M events/s with one core, 0.41-0.42 s = 24M events/s whenever both cores were free; replay
2.65 s (3.8M); peak 176 MB (SQL), 301 MB (replay). The same events in the earlier layout
(evt.num order, 64k-row groups, 178 MB), same runs: SQL 1.92 s (1.93 s CPU, 5.2M), replay
3.27 s. SQL's floor is its Parquet scan: `scan` decodes the 43 columns the rules read, no rule
evaluated, in 0.47 s of CPU (1.40 s before); see analyze/sql_engine.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from analyze.engine_api import CompiledRule

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ROOT.parent / "shared" / "anchors"
K8S_SCAP = ANCHORS / "scap" / "bencer_k8s__capture.scap"
STABLE = ANCHORS / "falco-rules" / "rules" / "falco_rules.yaml"
SYSDIG_FILTER = (
    "evt.type in (open, openat, openat2) and evt.dir = < and fd.typechar = f "
    "and (fd.name startswith /etc or proc.name in (bash, sh, curl))"
)


def build_trace(work: Path, min_events: int) -> tuple[Path, int]:
    """The k8s capture imported once, then replicated through the project's TraceWriter, so the
    bench reads the layout users get (encodings, compression, row groups). The files live under
    a directory named after the writer's source: a writer change builds them afresh."""
    from analyze.trace_reader import open_trace
    from capture.scap_import import import_scap
    from capture.trace_writer import TraceWriter

    work = work / f"writer-{_writer_tag()}"
    work.mkdir(parents=True, exist_ok=True)
    base = work / "k8s.parquet"
    if not base.exists():
        import_scap(K8S_SCAP, base)
    copies = -(-min_events // pq.ParquetFile(base).metadata.num_rows)
    big = work / f"k8s_x{copies}.parquet"
    if big.exists():
        return big, pq.ParquetFile(big).metadata.num_rows
    table = pq.read_table(base)
    nums = table.column("evt.num")
    times = table.column("evt.time").cast(pa.int64())
    span_num = pc.max(nums).as_py() - pc.min(nums).as_py() + 1
    span_time = pc.max(times).as_py() - pc.min(times).as_py() + 1
    num_i = table.schema.get_field_index("evt.num")
    time_i = table.schema.get_field_index("evt.time")
    time_type = table.schema.field(time_i).type
    with TraceWriter(big, open_trace(base).files[0].meta) as writer:
        for i in range(copies):
            writer.write(table.set_column(
                num_i, "evt.num", pc.add(nums, i * span_num)
            ).set_column(
                time_i, "evt.time", pc.add(times, i * span_time).cast(time_type)
            ))
        writer.close()
    return big, copies * table.num_rows


def _writer_tag() -> str:
    """A short digest of the trace writer's source."""
    source = (ROOT / "capture" / "trace_writer.py").read_bytes()
    return hashlib.sha256(source).hexdigest()[:10]


def run_engine(engine: str, trace: Path) -> dict[str, float | str]:
    """Runs in a child process: load rules, run the engine once, report time and peak RSS."""
    import importlib

    from analyze.engine_api import RunOptions, selected_rules
    from analyze.resolve import load_rules
    from analyze.run import ENGINE_MODULES

    rules, _ = selected_rules(load_rules([STABLE, ROOT / "rules"]), RunOptions(rule_matching="all"))
    cpu_start, start = _cpu_seconds(), time.perf_counter()
    note = f"{len(rules)} rules"
    if engine == "scan":
        matches: list[object] = []
        note = f"{scan_only(trace, rules)} columns of the SQL engine's scan, no rule evaluated"
    else:
        module = importlib.import_module(ENGINE_MODULES[engine])
        cls = next(getattr(module, n) for n in dir(module)
                   if n.endswith("Engine") and n != "Engine")
        matches = cls().run([str(trace)], rules, RunOptions(rule_matching="all"))
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "cpu": cpu, "matches": len(matches), "note": note,
            "peak_mb": peak_kb / 1024}


def scan_only(trace: Path, rules: list[CompiledRule]) -> int:
    """The SQL engine's first scan without its rules: the columns its statement names (but the
    deferred ancestor lists), decoded for the events of the rules' types; no rule evaluated.
    This is the floor of the SQL engine on that trace. Returns the number of columns."""
    from analyze.engine_api import RunOptions
    from analyze.query import connect
    from analyze.sql_engine import DEFERRED, build_query
    from analyze.sql_translate import quote_ident
    from analyze.trace_reader import open_trace
    from schemas.trace import arrow_schema

    query = build_query(rules, RunOptions(), relax=DEFERRED)
    named = set(re.findall(r'"([^"]+)"', query.sql)) & set(arrow_schema().names) - DEFERRED
    types = sorted(frozenset().union(*(r.evttypes for r in query.rules)))
    columns = ", ".join(f"max({quote_ident(c)})" for c in sorted(named - {"evt.type"}))
    con = connect(open_trace([trace]))
    try:
        con.execute(f"SELECT count(*), {columns} FROM events "
                    'WHERE "evt.type" IN (SELECT unnest($1::VARCHAR[]))', [types]).fetchall()
    finally:
        con.close()
    return len(named)


def _cpu_seconds() -> float:
    """CPU time of this process, all threads: on a shared machine it varies less than the
    wall clock, which waits for the other processes."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
    ap.add_argument("--engines", default="sql,replay,scan",
                    help="sql, replay, and scan: the SQL engine's scan alone")
    ap.add_argument("--child", nargs=2, metavar=("ENGINE", "TRACE"), help=argparse.SUPPRESS)
    ap.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_engine(args.child[0], Path(args.child[1]))))
        return
    if args.build:
        built, count = build_trace(args.work, args.events)
        print(json.dumps({"trace": str(built), "events": count}))
        return
    # Built in a child too: a process starts with its parent's peak RSS (Linux keeps it across
    # fork and exec), so the engines' figures would otherwise include the building.
    proc = subprocess.run([sys.executable, __file__, "--build", "--events", str(args.events),
                           "--work", str(args.work)], capture_output=True, text=True, cwd=ROOT,
                          check=True)
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    trace, events = Path(built["trace"]), int(built["events"])
    size = trace.stat().st_size
    print(f"trace: {trace} ({events:,} events, {size / 1e6:.0f} MB, "
          f"{size / events:.1f} bytes/event)")
    print(f"{'engine':<10}{'events/s':>16}{'seconds':>10}{'cpu s':>8}{'peak MB':>10}"
          f"{'matches':>10}")
    for engine in args.engines.split(","):
        proc = subprocess.run([sys.executable, __file__, "--child", engine, str(trace)],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(f"{engine:<10} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{engine:<10}{events / r['seconds']:>16,.0f}{r['seconds']:>10.2f}{r['cpu']:>8.2f}"
              f"{r['peak_mb']:>10.0f}{r['matches']:>10,}  ({r['note']})")
    s = run_sysdig()
    if s:
        print(f"{'sysdig':<10}{s['events'] / s['seconds']:>16,.0f}{s['seconds']:>10.2f}"
              f"{'-':>8}{'-':>10}{s['matches']:>10,}  (one filter, original 143,904-event capture)")


if __name__ == "__main__":
    main()
