"""capture/handlers.script_interpreter: the interpreter a `#!` script names, as binfmt_script
reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from capture.handlers import script_interpreter


@pytest.mark.parametrize(("head", "expected"), [
    (b"#!/bin/sh\nexit 0\n", "/bin/sh"),
    (b"#! /usr/bin/env python3\n", "/usr/bin/env"),
    (b"#!\t/bin/bash -e -u\n", "/bin/bash"),
    (b"#!relative/interp\n", "relative/interp"),
    (b"#!\n", None),
    (b"#!   \n/bin/sh\n", None),
    (b"\x7fELF\x02\x01\x01", None),
    (b"", None),
])
def test_shebang(tmp_path: Path, head: bytes, expected: str | None) -> None:
    path = tmp_path / "f"
    path.write_bytes(head)
    assert script_interpreter(str(path)) == expected


def test_unreadable_or_missing(tmp_path: Path) -> None:
    assert script_interpreter(str(tmp_path / "gone")) is None
    assert script_interpreter(str(tmp_path)) is None  # a directory
