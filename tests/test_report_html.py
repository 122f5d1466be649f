"""`analyze run --html`: the report page, checked as parsed HTML and as a real browser renders it.

Results are built by hand (deterministic, every field under control) except in the CLI tests,
which run real rules over a real imported capture. The hostile result puts markup, quotes,
control and bidi characters into every string a trace or rule file can supply; the page must
show them as text and contain no element or attribute they tried to inject.

The browser tests run Debian's chromium headless (`--dump-dom` for the DOM after parsing and
layout, `--screenshot` for pixels). Without chromium they skip on a developer machine and fail
in CI (SYSREPLAY_REQUIRE_ROOT_TESTS=1), like the root tests: scripts/setup.sh installs it.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import unavailable
from fixtures_traces import imported_traces, write_rules

import cli
from analyze.alerts import Alert
from analyze.engine_api import RunOptions, Skipped
from analyze.errors import RuleWarning
from analyze.report_html import HTML_MAX_ALERTS, OUTPUT_CHARS, render_html
from analyze.report_svg import _nice_top, esc, stack_by_priority
from analyze.run import RunResult
from analyze.run_render import alert_stats
from analyze.trace_reader import TraceInfo

START = 1704078720_000000000  # 2024-01-01T03:12:00Z
SECOND = 10**9
SECTIONS = ["summary", "by-priority", "timeline", "by-rule", "by-process", "by-container",
            "alerts", "skipped", "warnings"]
# Every element the page is made of: anything else was injected.
ELEMENTS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "section", "dl", "dt",
            "dd", "br", "span", "table", "thead", "tbody", "tr", "th", "td", "p", "svg", "line",
            "text", "rect", "ul", "li", "details", "summary", "footer", "code", "div", "colgroup",
            "col"}
MARK = "data-pwned"
SCRIPT = f"<script>document.documentElement.setAttribute('{MARK}','script')</script>"
IMG = f"<img src=x onerror=\"document.documentElement.setAttribute('{MARK}','img')\">"
BREAKOUT = "'\"><svg onload=alert(1)></style></title></textarea>"
CONTROLS = "\x1b[31mred\x00\u202eevil"


# ---- building results ---------------------------------------------------------------------------


def info(**kwargs: object) -> TraceInfo:
    fields: dict[str, object] = {
        "paths": (Path("/traces/web-1.parquet"),), "events": 120_000, "dropped": 7,
        "drops": {"ring": 7}, "capture_start_ns": START, "capture_end_ns": START + 60 * SECOND,
        "hostnames": ("web-1",), "kernels": ("6.1.0",), "sources": ("live",), "source_files": (),
        "schema_versions": ("1.0",), "options": {}, "row_groups": 1, "size_bytes": 1000,
    }
    fields.update(kwargs)
    return TraceInfo(**fields)  # type: ignore[arg-type]


def alert(n: int, at_s: float, rule: str = "Write below etc", priority: str = "Error",
          proc: str = "vi", container: tuple[str, str, str] = ("host", "host", ""),
          output: str | None = None, tags: tuple[str, ...] = ("filesystem",)) -> Alert:
    return Alert(
        evt_num=n, time_ns=START + int(at_s * SECOND), rule=rule, priority=priority,
        source="syscall", tags=tags, hostname="web-1",
        output=output if output is not None else f"{proc} wrote /etc/hosts",
        output_fields={"evt.num": n}, proc_name=proc, container_id=container[0],
        container_name=container[1], container_image=container[2] or None,
    )


def result(alerts: list[Alert], **kwargs: object) -> RunResult:
    fields: dict[str, object] = {
        "info": info(), "rule_files": ("rules/a.yaml",), "engine": "sql",
        "options": RunOptions(), "window_start_ns": START, "window_end_ns": START + 60 * SECOND,
        "events": 120_000, "engine_seconds": 0.5, "total_seconds": 0.75,
        "rules_run": ("Write below etc", "Shell in container", "Netcat"),
        "skipped": (Skipped("Old rule", "priority Debug is below Warning"),),
        "loader_warnings": 0, "alerts": tuple(alerts),
        "engine_warnings": (RuleWarning("missing-field", "rule Netcat reads fd.sip.name"),),
    }
    fields.update(kwargs)
    return RunResult(**fields)  # type: ignore[arg-type]


ALERTS = [
    alert(10, 1.0, tags=("T1543", "filesystem")),
    alert(11, 2.5, rule="Shell in container", priority="Warning", proc="bash",
          container=("abc123", "web", "nginx:1.25"), tags=("container", "shell")),
    alert(12, 2.6, rule="Shell in container", priority="Warning", proc="bash",
          container=("abc123", "web", "nginx:1.25"), tags=("container", "shell")),
    alert(13, 59.0, rule="Netcat", priority="Critical", proc="nc", tags=("network",)),
]


def hostile_result() -> RunResult:
    """Markup and controls in every string that comes from a trace or a rule file."""
    bad = SCRIPT + IMG + BREAKOUT + CONTROLS
    alerts = [alert(i, i * 0.5, rule="rule " + bad, priority="Critical", proc="proc" + bad,
                    container=("id" + bad, "name" + bad, "image" + bad), output="out " + bad,
                    tags=("tag" + bad,)) for i in range(3)]
    return result(
        alerts, info=info(paths=(Path("/t/" + bad + ".parquet"),), hostnames=("host" + bad,),
                          drops={"ring" + bad: 7}),
        rule_files=("rules/" + bad + ".yaml",), engine="sql",
        options=RunOptions(tags=("t" + bad,), skip_tags=("s" + bad,)),
        skipped=(Skipped("skipped " + bad, "reason " + bad),),
        engine_warnings=(RuleWarning("code" + bad, "message " + bad),),
    )


# ---- reading pages ------------------------------------------------------------------------------


class Page(HTMLParser):
    """A page's elements (tag, attributes), its text, and per section its table rows and text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.section_text: dict[str, list[str]] = {}
        self.summary: dict[str, str] = {}
        self._section = ""
        self._cell: list[str] | None = None
        self._dt = ""
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "section":
            self._section = dict(attrs).get("id") or ""
            self.rows[self._section], self.section_text[self._section] = [], []
        elif tag == "tr":
            self.rows[self._section].append([])
        elif tag in ("td", "dt", "dd"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[self._section][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "dt" and self._cell is not None:
            self._dt = "".join(self._cell).strip()
            self._cell = None
        elif tag == "dd" and self._cell is not None:
            self.summary[self._dt] = "".join(self._cell).strip()
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._section:
            self.section_text[self._section].append(data)
        if self._cell is not None:
            self._cell.append(data)

    def table(self, section: str) -> list[list[str]]:
        """The body rows (header rows have no td) of the first table of `section`."""
        return [row for row in self.rows[section] if row]

    def all_text(self, section: str | None = None) -> str:
        return "".join(self.section_text[section] if section else self.text)

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.elements if tag == name]


def section_ids(page: Page) -> list[str]:
    return [attrs.get("id") or "" for attrs in page.tags("section")]


# ---- structure and counts -----------------------------------------------------------------------


def test_sections_in_order() -> None:
    page = Page(render_html(result(ALERTS)))
    assert section_ids(page) == SECTIONS
    assert page.tags("html")[0].get("lang") == "en"
    assert page.all_text().count("sysreplay analyze run: 4 alerts") == 1


def test_summary() -> None:
    page = Page(render_html(result(ALERTS, options=RunOptions(min_priority="Warning",
                                                               tags=("fs",)))))
    assert page.summary == {
        "Trace": "/traces/web-1.parquet",
        "Host": "web-1",
        "Time": "2024-01-01T03:12:00.000000000Z to 03:13:00.000000000 (1m00s)",
        "Events": "120,000 analysed",
        "Drops": "7 (ring 7)",
        "Engine": "sql, rule matching: first",
        "Rule files": "rules/a.yaml",
        "Rules": "3 run, 1 skipped; from 1 file(s); priority >= Warning; tags fs",
        "Alerts": "4 Critical 1 Error 1 Warning 2",
    }


def test_counts_by_priority_rule_process_container() -> None:
    page = Page(render_html(result(ALERTS)))
    assert page.table("by-priority") == [["Critical", "1"], ["Error", "1"], ["Warning", "2"]]
    assert page.table("by-rule") == [
        ["Netcat", "Critical", "network", "1", "03:12:59.000000000", "03:12:59.000000000"],
        ["Write below etc", "Error", "T1543filesystem", "1", "03:12:01.000000000",
         "03:12:01.000000000"],
        ["Shell in container", "Warning", "containershell", "2", "03:12:02.500000000",
         "03:12:02.600000000"],
    ]
    assert [t.get("class") for t in page.tags("span") if t.get("class") == "tag"] == ["tag"] * 5
    assert page.table("by-process") == [["bash", "2"], ["vi", "1"], ["nc", "1"]]
    assert page.table("by-container") == [  # ties in order of appearance
        ["host", "host", "<NA>", "2"], ["abc123", "web", "nginx:1.25", "2"],
    ]


def test_alert_list() -> None:
    page = Page(render_html(result(ALERTS)))
    assert "Alerts (all 4)" in page.all_text("alerts")
    assert page.table("alerts")[1] == [
        "03:12:02.500000000", "11", "Warning", "Shell in container", "bash wrote /etc/hosts",
    ]
    times = [a for a in page.tags("td") if a.get("class") == "t"]
    assert times[-1]["title"] == "2024-01-01T03:12:59.000000000Z"


def test_skipped_and_warnings() -> None:
    skipped = tuple(Skipped(f"Rule {i}", "not applicable") for i in range(8))
    page = Page(render_html(result(ALERTS, skipped=skipped)))
    assert "Skipped rules (8)" in page.all_text("skipped")
    assert page.table("skipped") == [
        ["not applicable", "8", ", ".join(f"Rule {i}" for i in range(8))],
    ]
    assert page.table("warnings") == [["missing-field", "rule Netcat reads fd.sip.name"]]


def test_no_alerts() -> None:
    page = Page(render_html(result([], engine_warnings=())))
    assert section_ids(page) == ["summary", "alerts", "skipped"]
    assert "No alerts." in page.all_text("alerts")
    assert not page.tags("svg")
    assert page.summary["Alerts"] == "0"


def test_unknown_time_range_and_drops() -> None:
    res = result(ALERTS, info=info(dropped=None, capture_start_ns=None, capture_end_ns=None,
                                   hostnames=()),
                 window_start_ns=None, window_end_ns=None)
    page = Page(render_html(res))
    assert page.summary["Time"] == "unknown (the trace records no time range)"
    assert page.summary["Drops"] == "unknown (the capture does not record its drops)"
    assert page.summary["Host"] == "unknown"
    assert "Timeline" in page.all_text("timeline")  # spans the alerts instead


def test_loader_warnings_are_mentioned() -> None:
    res = replace(result(ALERTS), loader_warnings=2)
    assert "2 loader warning(s)" in Page(render_html(res)).summary["Rules"]


# ---- timeline -----------------------------------------------------------------------------------


def test_timeline_bars_add_up_by_priority() -> None:
    many = [alert(i, i * 0.37 % 60, priority=("Error", "Warning", "Notice")[i % 3])
            for i in range(500)]
    page = Page(render_html(result(many)))
    bars = [a for a in page.tags("rect") if a.get("class") == "bar"]
    by_priority: dict[str, int] = {}
    for bar in bars:
        priority, count = bar["data-priority"] or "", int(bar["data-count"] or 0)
        by_priority[priority] = by_priority.get(priority, 0) + count
    assert by_priority == {"Error": 167, "Warning": 167, "Notice": 166}
    assert sum(int(row[1].replace(",", "")) for row in page.table("timeline")) == 500
    assert len(page.table("timeline")) == 60
    assert "1.00s per bar" in page.all_text("timeline")


def test_stacked_slices_match_the_timeline() -> None:
    stats = alert_stats(ALERTS, START, START + 60 * SECOND, slices=12)
    stacked = stack_by_priority(ALERTS, stats)
    assert [s.total for s in stacked] == [s.count for s in stats.timeline]
    assert [s.start_ns for s in stacked] == [s.start_ns for s in stats.timeline]
    assert stacked[0].counts == (("Error", 1), ("Warning", 2))  # most severe first
    assert stacked[-1].counts == (("Critical", 1),)


@pytest.mark.parametrize(("peak", "top"), [(0, 4), (1, 4), (3, 4), (5, 8), (9, 20), (41, 80),
                                           (400, 400), (401, 800), (999_999, 2_000_000)])
def test_nice_axis_top(peak: int, top: int) -> None:
    assert _nice_top(peak) == top


# ---- caps ---------------------------------------------------------------------------------------


def test_alert_list_cap_and_note() -> None:
    page = Page(render_html(result(ALERTS), max_alerts=2))
    assert "Alerts (first 2 of 4)" in page.all_text("alerts")
    assert len(page.table("alerts")) == 2
    assert "… 2 more alerts; use --format json (or --html-max-alerts)" in page.all_text("alerts")
    none = Page(render_html(result(ALERTS), max_alerts=0))
    assert none.table("alerts") == [] and "… 4 more alerts" in none.all_text("alerts")


def test_default_cap_keeps_counts_whole() -> None:
    many = [alert(i, i / 1000, proc=f"p{i % 70}") for i in range(HTML_MAX_ALERTS + 2_500)]
    page = Page(render_html(result(many)))
    assert len(page.table("alerts")) == HTML_MAX_ALERTS
    assert f"first {HTML_MAX_ALERTS:,} of 12,500" in page.all_text("alerts")
    assert page.table("by-rule")[0][3] == "12,500"
    assert len(page.table("by-process")) == 50
    assert "… 20 more processes" in page.all_text("by-process")


def test_long_outputs_are_cut() -> None:
    page = Page(render_html(result([alert(1, 1.0, output="x" * (OUTPUT_CHARS + 5))])))
    cell = page.table("alerts")[0][-1]
    assert cell == "x" * OUTPUT_CHARS + "… 5 more characters"


def test_cli_default_cap_is_the_module_constant() -> None:
    option = next(p for p in cli.run_cmd.params if p.name == "html_max_alerts")
    assert option.default == HTML_MAX_ALERTS


# ---- self-contained, escaped, deterministic -----------------------------------------------------


URL_HINTS = re.compile(r"https?:|//|\burl\(|@import|\bsrc=|\bhref=|<link|<script|<img|<iframe|"
                       r"<object|<embed|xlink", re.IGNORECASE)


@pytest.mark.parametrize("res", [result(ALERTS), result([])], ids=["alerts", "none"])
def test_no_external_reference(res: RunResult) -> None:
    page = render_html(res)
    assert URL_HINTS.findall(page) == []
    csp = next(m for m in Page(page).tags("meta") if m.get("http-equiv"))
    assert csp["content"] is not None and "default-src 'none'" in csp["content"]


def test_hostile_strings_are_text() -> None:
    page_text = render_html(hostile_result())
    page = Page(page_text)
    assert {tag for tag, _ in page.elements} <= ELEMENTS
    assert not [a for _, attrs in page.elements for a in attrs if a.startswith("on")]
    shown = SCRIPT + IMG + BREAKOUT + "\\x1b[31mred\\x00\\u202eevil"
    text = page.all_text()
    for prefix in ("rule ", "proc", "id", "name", "image", "out ", "tag", "host", "/t/", "rules/",
                   "skipped ", "reason ", "code", "message ", "ring", "t", "s"):
        assert prefix + shown in text, prefix
    assert "\x1b" not in page_text and "\x00" not in page_text and "\u202e" not in page_text


@pytest.mark.parametrize(("raw", "shown"), [
    ("<b>&'\"", "&lt;b&gt;&amp;&#x27;&quot;"),
    ("tab\tnew\nline", "tab\tnew\nline"),
    ("\x07\x7f\x85", "\\x07\\x7f\\x85"),
    ("\u200b\u2066\ud800", "\\u200b\\u2066\\ud800"),
    ("ünïcødé ✓", "ünïcødé ✓"),
])
def test_esc(raw: str, shown: str) -> None:
    assert esc(raw) == shown


def test_deterministic_and_without_timings() -> None:
    first = render_html(result(ALERTS))
    again = render_html(result(ALERTS, engine_seconds=9.0, total_seconds=12.0))
    assert first == again
    assert "0.500" not in first and "events/s" not in first


def test_encodes_as_utf8() -> None:
    """A lone surrogate (not UTF-8) in a trace string cannot break the file write."""
    page = render_html(result([alert(1, 1.0, output="bad \ud83d half")]))
    assert "bad \\ud83d half" in page
    page.encode("utf-8")


# ---- the command --------------------------------------------------------------------------------


HOSTILE_RULES = """\
- rule: "<script>document.title='pwned'</script> & \\"quoted\\""
  desc: cat opened a file
  condition: evt.type = open and proc.name = cat
  output: "<img src=x onerror=alert(1)> file=%fd.name cmd=%proc.cmdline"
  priority: WARNING
  tags: [<b>bold</b>]
"""


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(imported_traces(tmp_path_factory)["falco__cat_write"])


def analyze(*args: str) -> Result:
    return CliRunner().invoke(cli.analyze, list(args))


def test_cli_writes_the_page_with_any_format(cat: str, tmp_path: Path) -> None:
    rules = str(write_rules(tmp_path, HOSTILE_RULES))
    out = tmp_path / "report.html"
    res = analyze("run", cat, "-r", rules, "--format", "json", "--html", str(out))
    assert res.exit_code == 3, res.output
    assert f"Wrote report to {out}." in res.stderr
    assert len(res.stdout.splitlines()) == 8  # the JSON alerts still go to stdout
    page = Page(out.read_text())
    assert section_ids(page) == ["summary", "by-priority", "timeline", "by-rule", "by-process",
                                 "by-container", "alerts"]
    assert page.table("by-rule")[0][:4] == [
        "<script>document.title='pwned'</script> & \"quoted\"", "Warning", "<b>bold</b>", "8"]
    assert {tag for tag, _ in page.elements} <= ELEMENTS
    assert all(row[-1].startswith("<img src=x onerror=alert(1)> file=")
               for row in page.table("alerts"))
    again = tmp_path / "again.html"
    analyze("run", cat, "-r", rules, "--html", str(again), "--html-max-alerts", "1")
    assert "Alerts (first 1 of 8)" in again.read_text()


def test_cli_html_same_bytes_twice(cat: str, tmp_path: Path) -> None:
    rules = str(write_rules(tmp_path))
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    assert analyze("run", cat, "-r", rules, "--format", "text", "--html", str(a)).exit_code == 3
    assert analyze("run", cat, "-r", rules, "--format", "text", "--html", str(b)).exit_code == 3
    assert a.read_bytes() == b.read_bytes()


def test_cli_bad_html_path_fails_before_the_run(tmp_path: Path) -> None:
    """The trace does not exist either: the path error shows, so it was checked first."""
    bad = tmp_path / "no" / "report.html"
    res = analyze("run", str(tmp_path / "missing.parquet"), "-r", str(tmp_path), "--html",
                  str(bad))
    assert res.exit_code == 1
    assert f"Cannot write {bad}: the directory {bad.parent} does not exist." in res.output
    assert "Traceback" not in res.output


def test_cli_html_and_output_must_differ(tmp_path: Path) -> None:
    same = str(tmp_path / "r.html")
    res = analyze("run", "t.parquet", "-r", "rules", "-o", same, "--html", same)
    assert res.exit_code == 2
    assert "-o and --html name the same file" in res.output


# ---- a real browser -----------------------------------------------------------------------------


BROWSER_TIMEOUT = 60  # s: a cold start on a loaded 2-core machine takes a few


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    unavailable("needs chromium to render the HTML report (apt-get install chromium; "
                "scripts/setup.sh installs it)")
    raise AssertionError("unreachable")


def browse(chromium: str, page: Path, tmp_path: Path, *args: str) -> str:
    """Run headless chromium on `page` and return its stdout (the DOM with --dump-dom)."""
    profile = tmp_path / "profile"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-extensions", "--disable-sync",
           "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
           *args, page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_browser_renders_the_report(chromium: str, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_html(result(ALERTS)), encoding="utf-8")
    dom = Page(browse(chromium, path, tmp_path, "--dump-dom"))
    assert section_ids(dom) == SECTIONS
    assert dom.summary["Alerts"] == "4 Critical 1 Error 1 Warning 2"
    assert dom.table("by-priority") == [["Critical", "1"], ["Error", "1"], ["Warning", "2"]]
    assert [row[0] for row in dom.table("by-rule")] == ["Netcat", "Write below etc",
                                                        "Shell in container"]
    assert len(dom.table("alerts")) == 4
    bars = [a for a in dom.tags("rect") if a.get("class") == "bar"]
    assert sum(int(b["data-count"] or 0) for b in bars) == 4
    assert len(dom.tags("svg")) == 1


def test_browser_shows_hostile_strings_as_text(chromium: str, tmp_path: Path) -> None:
    """With the page's CSP, and again without it (escaping alone must hold): no injected
    element, no script ran. A script of our own, added to the copy without CSP, proves the
    browser would have shown a script's effect in the dumped DOM."""
    page = render_html(hostile_result())
    with_csp, without = tmp_path / "csp.html", tmp_path / "nocsp.html"
    with_csp.write_text(page, encoding="utf-8")
    bare = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>\n', "", page)
    assert bare != page
    probe = "<script>document.body.setAttribute('data-probe','ran')</script>"
    without.write_text(bare.replace("</body>", probe + "</body>"), encoding="utf-8")
    for path, scripts in ((with_csp, 0), (without, 1)):
        dom = Page(browse(chromium, path, tmp_path, "--dump-dom"))
        assert {tag for tag, _ in dom.elements} <= ELEMENTS | ({"script"} if scripts else set())
        assert len(dom.tags("script")) == scripts
        assert all(MARK not in attrs for _, attrs in dom.elements)
        assert dom.tags("body")[0].get("data-probe") == ("ran" if scripts else None)
        assert "rule " + SCRIPT + IMG + BREAKOUT in dom.all_text("by-rule")
        assert "out " + SCRIPT + IMG in dom.all_text("alerts")


def test_browser_screenshot_is_not_blank(chromium: str, tmp_path: Path) -> None:
    path, shot = tmp_path / "report.html", tmp_path / "report.png"
    path.write_text(render_html(result(ALERTS)), encoding="utf-8")
    browse(chromium, path, tmp_path, f"--screenshot={shot}", "--window-size=1280,1600",
           "--hide-scrollbars")
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 1600)
    # A blank page is one colour: its filtered rows hold a handful of byte values. Text, the
    # priority badges and the chart's bars give nearly all 256.
    assert distinct_bytes(pixels) > 200


def test_browser_blank_page_calibrates_the_screenshot_check(chromium: str, tmp_path: Path) -> None:
    path, shot = tmp_path / "blank.html", tmp_path / "blank.png"
    path.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    browse(chromium, path, tmp_path, f"--screenshot={shot}", "--window-size=1280,1600",
           "--hide-scrollbars")
    assert distinct_bytes(png_pixels(shot.read_bytes())[2]) < 20


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the inflated (still filtered) image data of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, [], (0, 0)
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat.append(chunk)
        pos += 12 + length
    return size[0], size[1], zlib.decompress(b"".join(idat))


def distinct_bytes(data: bytes) -> int:
    return sum(1 for b in range(256) if bytes([b]) in data)
