"""Benchmark: `analyze run` on runs with many alerts (report, --html, json), and the page in
headless chromium.

Builds traces of about --events rows each (bench_engines.build_trace: the shared k8s capture
replicated) and a rule that fires on every event, so alerts = events. For each size, each in a
fresh process so peak memory is its own:
- `analyze run TRACE -r every_event.yaml` (the terminal report only), then the same with
  `--html out.html`: wall time, peak RSS, the page's size;
- `--format json`, every alert written (to /dev/null), up to --json-max-events events: the
  alerts are built and written a chunk at a time;
- chromium --headless --dump-dom and --screenshot of the page: wall time (browser start
  included) and whether the DOM holds every section.

Usage (from the repository root):
    .venv/bin/python bench/bench_report_html.py [--events 100000,1000000] [--work DIR]
        [--json-max-events 2000000] [--engine auto]

The issues' targets: a large trace's report opens "within seconds and bounded memory"; peak
memory < 1 GB regardless of trace size. With a rule firing on every event the peak is the
engine's (its list of `Match` objects) unless the engine gives a `MatchTable` (see
analyze/engine_api.py `TableEngine`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_engines import ROOT, build_trace

ANALYZE = ROOT / ".venv" / "bin" / "analyze"
EVERY_EVENT = """\
- rule: Every event
  desc: fires on every event, to make a run with as many alerts as events
  condition: evt.num > 0
  output: >
    %evt.type by %proc.name (cmdline=%proc.cmdline file=%fd.name container=%container.id
    user=%user.name)
  priority: NOTICE
  tags: [bench]
"""
SECTIONS = ('id="summary"', 'id="timeline"', 'id="by-rule"', 'id="alerts"', "<svg")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-extensions", "--disable-sync", "--no-first-run")


def timed(cmd: list[str], *, keep_stdout: bool = True) -> tuple[float, float, int, bytes]:
    """Run `cmd` to completion: wall seconds, peak RSS in MB (its own), exit status, stdout
    (thrown away unless `keep_stdout`)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out if keep_stdout else subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return seconds, usage.ru_maxrss / 1024, proc.returncode, out.read()


def bench_size(work: Path, events: int, chromium: str | None, json_max: int,
               engine: str) -> None:
    trace, rows = build_trace(work, events)
    rules = work / "every_event.yaml"
    rules.write_text(EVERY_EVENT)
    page = work / f"report_{rows}.html"
    base = [str(ANALYZE), "run", str(trace), "-r", str(rules), "--engine", engine]
    print(f"\n{rows:,} events ({trace.name}), one alert per event")
    runs = [("analyze run", base), ("analyze run --html", [*base, "--html", str(page)])]
    if rows <= json_max:
        runs.append(("analyze run --format json", [*base, "--format", "json"]))
    for label, cmd in runs:
        seconds, peak, status, _ = timed(cmd, keep_stdout=False)
        print(f"  {label:<28}{seconds:>8.2f} s{peak:>9.0f} MB peak  (exit {status})")
        print(f"    $ {' '.join(cmd)}{' > /dev/null' if 'json' in cmd else ''}")
    print(f"  page: {page.stat().st_size / 1e6:.1f} MB")
    if chromium is None:
        print("  chromium: not installed, page not opened")
        return
    with tempfile.TemporaryDirectory() as profile:
        flags = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        seconds, peak, status, dom = timed([*flags, "--dump-dom", page.as_uri()])
        found = all(s.encode() in dom for s in SECTIONS)
        print(f"  {'chromium --dump-dom':<28}{seconds:>8.2f} s{peak:>9.0f} MB peak  "
              f"(exit {status}, all sections in the DOM: {found})")
        shot = Path(profile) / "shot.png"
        seconds, peak, status, _ = timed([*flags, f"--screenshot={shot}",
                                          "--window-size=1280,2000", page.as_uri()])
        print(f"  {'chromium --screenshot':<28}{seconds:>8.2f} s{peak:>9.0f} MB peak  "
              f"(exit {status})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", default="100000,1000000",
                    help="comma-separated trace sizes (the trace is the k8s capture replicated)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sysreplay-bench"))
    ap.add_argument("--json-max-events", type=int, default=2_000_000,
                    help="run --format json only on traces of at most this many events "
                    "(it formats every alert: about 30 s a million)")
    ap.add_argument("--engine", default="auto", choices=("auto", "sql", "replay"))
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    print(f"python {sys.version.split()[0]}, chromium: {chromium or 'missing'}")
    for events in (int(e) for e in args.events.split(",")):
        bench_size(args.work, events, chromium, args.json_max_events, args.engine)


if __name__ == "__main__":
    main()
