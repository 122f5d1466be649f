"""Open a trace: one Parquet file, a directory of segments, or a glob of segments.

Every file is checked before anyone scans it: it must exist, be readable Parquet, carry sysreplay
metadata of a schema version this code reads, and have the core event columns. Each failure is a
`TraceFormatError` whose message names the file and says what is wrong with it, so the CLI can
print one paragraph instead of a traceback. Only footers are read here: `trace_info` on a large
trace costs a few reads per file, whatever its size.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.elision import sql_select
from schemas.trace import (
    META_PREFIX,
    REQUIRED_COLUMNS,
    SCHEMA_VERSION,
    TraceError,
    TraceMeta,
    version_compatible,
)

SEGMENT_SUFFIX = ".parquet"
_GLOB_CHARS = frozenset("*?[")


class TraceFormatError(TraceError):
    """A path that is not a readable sysreplay trace (missing, corrupt, foreign, too new)."""


@dataclass(frozen=True)
class TraceFile:
    """One validated trace file and what its footer says."""

    path: Path
    meta: TraceMeta
    rows: int  # rows in the Parquet footer (equals meta.events for a finished file)
    row_groups: int
    size_bytes: int
    columns: tuple[str, ...]


@dataclass(frozen=True)
class TraceInfo:
    """What `capture info` reports: a trace's metadata, summed over its segments."""

    paths: tuple[Path, ...]
    events: int
    dropped: int | None  # None: unknown for at least one segment (imports)
    drops: dict[str, int]
    capture_start_ns: int | None
    capture_end_ns: int | None
    hostnames: tuple[str, ...]
    kernels: tuple[str, ...]
    sources: tuple[str, ...]
    source_files: tuple[str, ...]
    schema_versions: tuple[str, ...]
    options: dict[str, Any]  # the first segment's (segments of one capture share them)
    row_groups: int
    size_bytes: int
    # How rows are ordered inside each row group, one entry per distinct order among the files,
    # e.g. ("evt.type,evt.num",) (schemas.trace.CLUSTERED_ORDER; older traces: "evt.num").
    row_orders: tuple[str, ...] = ()

    @property
    def duration_ns(self) -> int | None:
        if self.capture_start_ns is None or self.capture_end_ns is None:
            return None
        return self.capture_end_ns - self.capture_start_ns

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (paths as strings), for `capture info --format json`."""
        return {
            "files": [str(p) for p in self.paths],
            "events": self.events,
            "dropped": self.dropped,
            "drops": self.drops,
            "capture_start_ns": self.capture_start_ns,
            "capture_end_ns": self.capture_end_ns,
            "duration_ns": self.duration_ns,
            "hostnames": list(self.hostnames),
            "kernels": list(self.kernels),
            "sources": list(self.sources),
            "source_files": list(self.source_files),
            "schema_versions": list(self.schema_versions),
            "options": self.options,
            "row_groups": self.row_groups,
            "size_bytes": self.size_bytes,
            "row_orders": list(self.row_orders),
        }


@dataclass(frozen=True)
class Trace:
    """A validated trace: its files in segment order."""

    files: tuple[TraceFile, ...]

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(f.path for f in self.files)

    @property
    def columns(self) -> frozenset[str]:
        """The columns any of the files has (segments of older minor versions may lack some)."""
        return frozenset(c for f in self.files for c in f.columns)

    @property
    def select_list(self) -> str:
        """What a DuckDB view of these files selects: every column, elided values put back."""
        return sql_select(self.columns)

    def info(self) -> TraceInfo:
        return summarize(self.files)


def open_trace(target: str | Path | Sequence[str | Path]) -> Trace:
    """Resolve `target` (file, directory, glob, or a list of them) and validate every file."""
    targets = [target] if isinstance(target, (str, Path)) else list(target)
    if not targets:
        raise TraceFormatError("No trace given: name a trace file, a directory or a glob.")
    paths: list[Path] = []
    for item in targets:
        paths.extend(p for p in resolve_paths(item) if p not in paths)
    return Trace(tuple(read_trace_file(p) for p in paths))


def trace_info(target: str | Path | Sequence[str | Path]) -> TraceInfo:
    """The metadata of a trace, from its footers only (no data is scanned)."""
    return open_trace(target).info()


def resolve_paths(target: str | Path) -> list[Path]:
    """The files `target` names: itself, a directory's *.parquet, or a glob's matches (sorted)."""
    path = Path(target)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.name.endswith(SEGMENT_SUFFIX))
        if not found:
            raise TraceFormatError(
                f"The directory {path} holds no trace segments (no *{SEGMENT_SUFFIX} files)."
            )
        return found
    if not path.exists() and _GLOB_CHARS & set(str(target)):
        matches = sorted(Path(p) for p in glob.glob(str(target)) if Path(p).is_file())
        if not matches:
            raise TraceFormatError(f"No trace files match the pattern {target}.")
        return matches
    return [path]


def read_trace_file(path: Path) -> TraceFile:
    """Validate one file from its footer; raise TraceFormatError naming the file if it is bad."""
    if not path.exists():
        raise TraceFormatError(f"The trace file {path} does not exist.")
    if not path.is_file():
        raise TraceFormatError(f"{path} is not a regular file, so it cannot be a trace.")
    try:
        parquet = pq.ParquetFile(path)
        metadata = parquet.metadata
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise TraceFormatError(
            f"{path} is not a readable Parquet file: it is corrupt, truncated (a capture still "
            f"being written, or one that was interrupted) or not Parquet at all ({_first(exc)})."
        ) from None
    meta = _meta_of(path, metadata.metadata or {})
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise TraceFormatError(
            f"{path} has sysreplay metadata but lacks the event columns {', '.join(missing)}; "
            "the file was damaged or written by something else."
        )
    return TraceFile(path, meta, metadata.num_rows, metadata.num_row_groups,
                     path.stat().st_size, tuple(schema.names))


def _meta_of(path: Path, kv: dict[bytes, bytes]) -> TraceMeta:
    if not any(k.startswith(META_PREFIX.encode()) for k in kv):
        raise TraceFormatError(
            f"{path} is a Parquet file but not a sysreplay trace: its footer has no "
            f"'{META_PREFIX}*' metadata. Traces are written by sysreplay's capture and "
            "`capture import` commands."
        )
    try:
        meta = TraceMeta.from_kv(kv)
    except (KeyError, ValueError) as exc:
        raise TraceFormatError(
            f"{path} has damaged sysreplay metadata ({exc}); it cannot be trusted as a trace."
        ) from None
    if not version_compatible(meta.schema_version):
        raise TraceFormatError(
            f"{path} was written with trace schema version {meta.schema_version}, which this "
            f"sysreplay (schema {SCHEMA_VERSION}) cannot read. Use a matching sysreplay version."
        )
    return meta


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def summarize(files: Iterable[TraceFile]) -> TraceInfo:
    """Add up the segments' metadata into one TraceInfo."""
    files = list(files)
    metas = [f.meta for f in files]
    starts = [m.capture_start_ns for m in metas if m.capture_start_ns is not None]
    ends = [m.capture_end_ns for m in metas if m.capture_end_ns is not None]
    drops: dict[str, int] = {}
    for m in metas:
        for key, value in m.drops.items():
            drops[key] = drops.get(key, 0) + value
    unknown = any(m.dropped is None for m in metas)
    return TraceInfo(
        paths=tuple(f.path for f in files),
        events=sum(m.events for m in metas),
        dropped=None if unknown else sum(m.dropped or 0 for m in metas),
        drops=drops,
        capture_start_ns=min(starts) if starts else None,
        capture_end_ns=max(ends) if ends else None,
        hostnames=_distinct(m.hostname for m in metas),
        kernels=_distinct(m.kernel for m in metas),
        sources=_distinct(m.source for m in metas),
        source_files=_distinct(m.source_file for m in metas),
        schema_versions=_distinct(m.schema_version for m in metas),
        options=metas[0].options if metas else {},
        row_groups=sum(f.row_groups for f in files),
        size_bytes=sum(f.size_bytes for f in files),
        row_orders=_distinct(",".join(m.row_order) for m in metas),
    )


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))
