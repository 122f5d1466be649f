"""`capture record --rules`: the syscalls recorded for rule files (capture/rule_syscalls.py) and
what reaches the BPF program and the CLI. (Rows of table-only syscalls left out: test_fast_feed.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from capture import doctor
from capture.bpf_render import resolve_syscalls
from capture.rule_syscalls import STATE_SYSCALLS, syscalls_for_choice, syscalls_for_rules

RULES = """
- macro: opened
  condition: evt.type in (open, openat) and evt.is_open_read=true

- rule: Read a secret
  desc: x
  condition: opened and fd.name = /etc/shadow
  output: "%proc.name"
  priority: WARNING

- rule: Make a directory or send
  desc: x
  condition: evt.type in (mkdir, sendmsg) and proc.name = evil
  output: "%proc.name"
  priority: NOTICE

- rule: Disabled ptrace
  desc: x
  condition: evt.type = ptrace
  output: "%proc.name"
  priority: NOTICE
  enabled: false
"""


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def test_rows_are_the_matched_syscalls_and_state_the_table_keepers(rules: Path) -> None:
    found = syscalls_for_rules([rules])
    assert found.rules == 2  # the disabled rule does not count
    assert found.rows == ("open", "openat", "mkdir")
    assert found.not_capturable == ("sendmsg",)
    assert "openat" not in found.state and {"close", "execve", "chdir"} <= set(found.state)
    assert set(found.state) == STATE_SYSCALLS - {"open", "openat"}
    assert "ptrace" not in found.syscalls and "rmdir" not in found.syscalls
    assert found.syscalls.index("open") < found.syscalls.index("close")  # table order


def test_print_bpf_with_rules(rules: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(cli.capture, ["record", "-o", "t.parquet", "--print-bpf",
                                              "--rules", str(rules)])
    assert result.exit_code == 0, result.output
    selected = result.output.split("syscall_selected", 1)[1].split("return 1;", 1)[0]
    assert "/* mkdir */" in selected and "/* close */" in selected
    assert "/* ptrace */" not in selected and "/* rmdir */" not in selected


def test_rules_refuse_a_preset_or_syscalls(rules: Path) -> None:
    for extra in (["--preset", "all"], ["--syscalls", "openat"]):
        result = CliRunner().invoke(cli.capture, ["record", "-o", "t.parquet", "--print-bpf",
                                                  "--rules", str(rules), *extra])
        assert result.exit_code == 2
        assert "--rules chooses the syscalls" in result.output


def test_a_rule_file_that_does_not_load_is_one_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- rule: x\n  desc: x\n  condition: evt.type = (\n  output: x\n"
                   "  priority: NOTICE\n")
    result = CliRunner().invoke(cli.capture, ["record", "-o", "t.parquet", "--print-bpf",
                                              "--rules", str(bad)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "bad.yaml" in result.output
    assert "Traceback" not in result.output


def test_a_choice_of_syscalls_records_the_state_set_unwritten() -> None:
    found = syscalls_for_choice(["fchmod", "openat"])
    assert found.rows == ("openat", "fchmod")
    assert {"clone", "execve", "close", "dup2", "setuid"} <= set(found.state)
    assert not set(found.rows) & set(found.state)


def test_an_fd_free_choice_adds_only_the_process_state() -> None:
    found = syscalls_for_choice(resolve_syscalls("exec"))
    assert "close" not in found.state and "openat" not in found.state
    assert set(found.state) == {"setuid", "setgid", "setreuid", "setregid", "setresuid",
                                "setresgid"}


def test_the_default_preset_is_all_rows() -> None:
    found = syscalls_for_choice(resolve_syscalls("default"))
    assert found.state == () and "close" in found.rows


def test_a_rule_on_recvmsg_is_told_only_fd_passing_calls_are_recorded(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("- rule: Received\n  desc: x\n  condition: evt.type = recvmsg\n"
                     "  output: x\n  priority: NOTICE\n")
    found = syscalls_for_rules([rules])
    assert "recvmsg" in found.rows
    assert found.not_capturable == ("recvmsg (only the calls that receive fds with SCM_RIGHTS)",)


def test_a_rule_on_recvmmsg_is_told_only_messages_with_fds_are_recorded(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("- rule: Received\n  desc: x\n  condition: evt.type = recvmmsg\n"
                     "  output: x\n  priority: NOTICE\n")
    found = syscalls_for_rules([rules])
    assert "recvmmsg" in found.rows and "recvmsg" in found.state
    assert found.not_capturable == (
        "recvmmsg (only the messages that carry fds with SCM_RIGHTS, of the first 8 of a call)",)
