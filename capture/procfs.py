"""Read /proc files that may vanish under us.

A process can exit between listing /proc and reading its files, and some files are unreadable
(kernel threads, other namespaces). The process and fd tables treat every such read as "nothing
known": these helpers return an empty value instead of raising.
"""

from __future__ import annotations

import os
from pathlib import Path


def read_text(path: Path) -> str:
    """The file's text (undecodable bytes replaced), or "" if it cannot be read."""
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def read_lines(path: Path) -> list[str]:
    """The file's lines, or [] if it cannot be read."""
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def readlink(path: Path) -> str | None:
    """The symlink's target, or None if it cannot be read."""
    try:
        return os.readlink(path)
    except OSError:
        return None
