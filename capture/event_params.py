"""What a syscall handler fills for one event (`Ev`), and the helpers every handler uses.

Kept apart from the handlers themselves (capture/handlers.py, capture/fd_handlers.py) so both
modules can use them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from capture.fd_table import FdInfo
from capture.probe import Record
from capture.proc_table import Proc
from capture.render_args import errno_name

if TYPE_CHECKING:
    from capture.enrich import Enricher


class Ev:
    """What a syscall handler extracted from one record, for its row (a plain slotted class:
    one is made per event, and a dataclass's __init__ costs several times more)."""

    __slots__ = ("fd", "fd_num", "name_changed", "opened", "params", "proc")

    def __init__(self) -> None:
        self.params: list[tuple[str, str, str | None]] = []  # name, raw, resolved
        self.fd_num: int | None = None
        self.fd: FdInfo | None = None
        self.opened: tuple[bool, bool, bool] | None = None  # is_open_read/write/exec
        self.name_changed = False
        self.proc: Proc | None = None  # the process after the event (execve, chdir)

    def add(self, name: str, raw: object, resolved: str | None = None) -> None:
        self.params.append((name, str(raw), resolved))


Handler = Callable[["Enricher", Record, Proc, Ev], None]


def item(rec: Record, index: int) -> bytes:
    """The record's `index`th payload item (b"" when the program sent fewer)."""
    return rec.items[index] if index < len(rec.items) else b""


def fd_param(en: Enricher, proc: Proc, ev: Ev, name: str, fd: int) -> FdInfo | None:
    info = en.fds.of(proc.pid).get(fd)
    resolved = info.resolved_char + info.name if info is not None else None
    ev.add(name, fd, resolved)
    return info


def res_param(ev: Ev, rec: Record) -> None:
    ev.add("res", rec.ret, errno_name(rec.ret) if rec.ret < 0 else None)
