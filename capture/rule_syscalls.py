"""Which syscalls a capture for given rule files records (`capture record --rules FILE...`).

Falco evaluates a rule only on the event types its condition can match (analyze/evttypes.py);
a capture meant for those rules needs only those syscalls as rows. The process and fd tables
that fill a row's `proc.*` and `fd.*` fields need more: execve and chdir change the process,
setuid and friends its ids, fork gives the child a copy of the parent's fds, and
open/close/dup/pipe/fcntl/socket/connect... change the fds. Those syscalls are recorded too
(filtered in the kernel like the rest) and applied to the tables, but written as rows only
when a rule can match them. Every other syscall is left out in the kernel.

Rules are counted as `analyze run` runs them by default: enabled, applicable to syscalls, with
a condition that resolved.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from capture.bpf_render import SYSCALLS

# What the enricher's tables learn from (capture/handlers.py): the process (exec, cwd, ids) and
# its fds (opened, closed, duplicated, received with SCM_RIGHTS, sockets and their endpoints,
# memfds).
STATE_SYSCALLS = frozenset({
    "execve", "execveat", "chdir", "fchdir",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
    "clone", "clone3", "fork", "vfork",  # a new process gets a copy of its parent's fds
    "open", "openat", "openat2", "creat", "close", "close_range", "dup", "dup2", "dup3",
    "fcntl", "pipe", "pipe2", "socketpair", "eventfd", "eventfd2", "signalfd", "signalfd4",
    "timerfd_create", "inotify_init", "inotify_init1", "epoll_create", "epoll_create1",
    "pidfd_open", "pidfd_getfd", "io_uring_setup",
    "socket", "connect", "bind", "listen", "accept", "accept4", "memfd_create",
    # recorded only when they received fds (SCM_RIGHTS): filtered in the kernel
    "recvmsg", "recvmmsg",
    "userfaultfd",
})
_CAPTURABLE = tuple(s.name for s in SYSCALLS)
# Syscalls the program records only in part (the kernel side drops the rest): a rule on them
# sees those calls only, which `capture record --rules` says.
PARTLY_CAPTURED = {
    "recvmsg": "only the calls that receive fds with SCM_RIGHTS",
    "recvmmsg": "only the messages that carry fds with SCM_RIGHTS, of the first 8 of a call",
}
# The part of the state set that keeps `proc.*` right (exec, cwd, ids, parentage and the fds a
# child inherits): few calls, recorded under any syscall choice.
PROCESS_STATE = frozenset({
    "execve", "execveat", "chdir", "fchdir",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
    "clone", "clone3", "fork", "vfork",
})
# Rows that say nothing through the fd table (no fd argument is resolved for them): a choice of
# only these (`--preset exec`) does not need the fd calls, which are most of a machine's volume.
_FD_FREE_ROWS = PROCESS_STATE | {"ptrace", "unshare", "mount", "umount2", "pivot_root",
                                 "init_module", "kill"}


@dataclass(frozen=True)
class RuleSyscalls:
    rows: tuple[str, ...]  # recorded and written: some rule can match them
    state: tuple[str, ...]  # recorded for the tables only, not written
    not_capturable: tuple[str, ...]  # event types the rules name that capture cannot record
    rules: int  # the rules counted

    @property
    def syscalls(self) -> tuple[str, ...]:
        """Everything the program records, in the syscall table's order."""
        wanted = set(self.rows) | set(self.state)
        return tuple(n for n in _CAPTURABLE if n in wanted)


def syscalls_for_choice(names: Sequence[str]) -> RuleSyscalls:
    """What a capture of the syscalls `names` (a preset or `--syscalls`) records: those as rows,
    and, for the tables only, the process state set, plus the fd state set unless every row is
    fd-free. Without them a `--syscalls` list lost fork's copy of the parent's fds (no clone
    recorded) or left a closed fd's path on the next row that used its number."""
    chosen = set(names)
    wanted = set(PROCESS_STATE)
    if not chosen <= _FD_FREE_ROWS:
        wanted |= STATE_SYSCALLS
    rows = tuple(n for n in _CAPTURABLE if n in chosen)
    state = tuple(n for n in _CAPTURABLE if n in wanted and n not in chosen)
    return RuleSyscalls(rows, state, (), 0)


def syscalls_for_rules(paths: Sequence[str | Path]) -> RuleSyscalls:
    """The syscalls to record for the rule files `paths` (loaded as `analyze run` does: a
    RuleError, with file and position, for a file that does not load)."""
    return _for_rules(tuple(str(p) for p in paths))


@functools.lru_cache(maxsize=8)
def _for_rules(paths: tuple[str, ...]) -> RuleSyscalls:
    from analyze.evttypes import evttypes
    from analyze.resolve import load_rules

    matched: set[str] = set()
    count = 0
    for rule in load_rules(paths).rules:
        if rule.enabled and rule.applicable and rule.ast is not None:
            matched |= evttypes(rule.ast)
            count += 1
    rows = tuple(n for n in _CAPTURABLE if n in matched)
    state = tuple(n for n in _CAPTURABLE if n in STATE_SYSCALLS and n not in matched)
    # Event types of the catalog that are not syscalls capture records (I/O calls, ...), and
    # those it records only in part.
    others = tuple(sorted(matched - set(_CAPTURABLE))) + tuple(
        f"{name} ({what})" for name, what in PARTLY_CAPTURED.items() if name in matched)
    return RuleSyscalls(rows, state, others, count)
