"""The scenarios `capture scenario` records: attack behaviours and a benign workload.

One scenario per behaviour Falco's event-generator exercises (its `syscall.*` actions and
declarative suite, see the anchors), each with the rules it must fire: ours
(rules/sysreplay_rules.yaml) and the upstream stable ones (falco_rules.yaml) that can fire from
a capture of ours. Upstream rules the behaviour targets but that cannot fire from our capture
are listed in `cannot_fire` with the reason, rather than bent. The `benign` workload must fire
none of our rules. The actions themselves are in capture/scenario_actions.py, the runner in
capture/scenario_runner.py.

Order matters a little: scenarios run in this order in one capture session, and the one that
needs its root process older than 5 s comes late, so the wait is mostly already over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from capture import scenario_actions as act

DEFAULT_COMM = "sr-scenario"  # the root process's command name unless a scenario needs another

# Why some upstream rules cannot fire from our capture (see `Scenario.cannot_fire`).
NO_CAPABILITIES = "needs thread.cap_effective, which live capture does not record"
NO_DNS = "needs fd.sip.name (the API server's DNS name), resolved by Falco at capture time"


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    net: bool = False  # a network namespace of its own (only loopback, down)
    privileged: bool = False  # what the stand-in runtime reports (container.privileged)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    action: Callable[[act.ActionContext], None]
    ours: tuple[str, ...] = ()  # rules of rules/ it must fire
    upstream: tuple[str, ...] = ()  # upstream stable rules it must fire
    container: ContainerSpec | None = None
    comm: str = DEFAULT_COMM  # the root process's command name (proc.name / proc.pname)
    tty: bool = False  # give the root a controlling terminal (proc.tty != 0)
    min_age: float = 0.0  # seconds the root must have lived before acting (proc.duration)
    listeners: tuple[str, ...] = ()  # loopback listeners of the runner it talks to
    cannot_fire: tuple[tuple[str, str], ...] = ()  # (upstream rule, why it cannot fire)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "read-sensitive-file", "Open /etc/shadow and /etc/sudoers for reading, and shadow "
        "through a ../ path", act.read_sensitive_files,
        ours=("Sensitive File Read",),
        upstream=("Read sensitive file untrusted", "Directory traversal monitored file read")),
    Scenario(
        "write-below-etc", "Create and remove a scratch file below /etc", act.write_below_etc,
        ours=("Write below /etc",)),
    Scenario(
        "write-below-binary-dir", "Create and remove a scratch file in /usr/local/bin",
        act.write_below_binary_dir, ours=("Write below Binary Directory",)),
    Scenario(
        "shell-in-container", "A shell with a terminal started in a container",
        act.shell_in_container, container=ContainerSpec("alpine:3.20"), tty=True,
        ours=("Shell Spawned in Container",), upstream=("Terminal shell in container",)),
    Scenario(
        "unexpected-process-in-image", "`id` run in a container of an image known to run "
        "only nginx",
        act.unexpected_process_in_image, container=ContainerSpec("nginx:1.25"),
        ours=("Unexpected Process in Known Image",)),
    Scenario(
        "netcat-reverse-shell", "nc -e /bin/sh to a loopback listener, in a container: stdin "
        "and stdout on the socket", act.netcat_reverse_shell,
        container=ContainerSpec("busybox:1.36"), listeners=("shell",),
        ours=("Netcat-like Tool Run", "Standard Stream Redirected to Network",
              "Shell Spawned in Container"),
        upstream=("Netcat Remote Code Execution in Container",
                  "Redirect STDOUT/STDIN to Network Connection in Container")),
    Scenario(
        "ptrace-attach", "PTRACE_ATTACH to a child sleep, then detach", act.ptrace_attach,
        ours=("Ptrace Attach to Process",), upstream=("PTRACE attached to process",)),
    Scenario(
        "ptrace-traceme", "A child calls PTRACE_TRACEME", act.ptrace_traceme,
        ours=("Ptrace Traceme",), upstream=("PTRACE anti-debug attempt",)),
    Scenario(
        "fileless-exec", "A copy of /bin/true run from a memfd", act.fileless_exec,
        ours=("Fileless Execution via memfd",),
        upstream=("Fileless execution via memfd_create",)),
    Scenario(
        "link-sensitive-file", "A symlink and a hard link to /etc/shadow in a scratch dir",
        act.link_sensitive_files, ours=("Symlink or Hardlink over Sensitive File",),
        upstream=("Create Symlink Over Sensitive Files", "Create Hardlink Over Sensitive Files")),
    Scenario(
        "packet-socket", "An AF_PACKET socket opened and closed in a container",
        act.packet_socket, container=ContainerSpec("debian:12", net=True),
        ours=("Packet Socket Created",), upstream=("Packet socket created in container",)),
    Scenario(
        "clear-log", "Truncate a scratch syslog and a scratch file below /var/log",
        act.clear_logs, ours=("Log File Cleared",), upstream=("Clear Log Activities",)),
    Scenario(
        "search-private-keys", "find and grep for SSH private keys in a scratch dir",
        act.search_private_keys, ours=("Search for Private Keys or Passwords",),
        upstream=("Search Private Keys or Passwords",)),
    Scenario(
        "find-aws-credentials", "grep for aws_secret_access_key and find .aws/credentials",
        act.find_aws_credentials, ours=("Search for Private Keys or Passwords",),
        upstream=("Find AWS Credentials",)),
    Scenario(
        "exec-from-dev-shm", "Run a scratch script from /dev/shm", act.exec_from_dev_shm,
        ours=("Program Executed from /dev/shm",), upstream=("Execution from /dev/shm",)),
    Scenario(
        "ssh-non-standard-port", "ssh to port 443 of 203.0.113.10, in a network namespace of "
        "its own", act.ssh_non_standard_port,
        ours=("SSH Connection to Non-standard Port",),
        upstream=("Disallowed SSH Connection Non Standard Port",)),
    Scenario(
        "k8s-api-from-container", "curl to a Kubernetes API port on loopback from a container",
        act.k8s_api_from_container, container=ContainerSpec("curlimages/curl:8.8.0"),
        listeners=("k8s-api",), ours=("Kubernetes API Contacted from Container",),
        cannot_fire=(("Contact K8S API Server From Container", NO_DNS),)),
    Scenario(
        "release-agent-write", "A file named release_agent written in a container",
        act.release_agent_write, container=ContainerSpec("alpine:3.20"),
        ours=("Cgroup release_agent Write",),
        cannot_fire=(("Detect release_agent File Container Escapes", NO_CAPABILITIES),)),
    Scenario(
        "namespace-change-in-container", "unshare --uts run in a container",
        act.namespace_change_in_container, container=ContainerSpec("alpine:3.20"),
        ours=("Mount or Namespace Change in Container",)),
    Scenario(
        "debugfs-in-privileged-container", "A program named debugfs (a link to true) run in a "
        "privileged container", act.debugfs_in_container,
        container=ContainerSpec("alpine:3.20", privileged=True),
        upstream=("Debugfs Launched in Privileged Container",)),
    Scenario(
        "remove-bulk-data", "shred -u a scratch file", act.remove_bulk_data,
        upstream=("Remove Bulk Data from Disk",)),
    Scenario(
        "run-shell-untrusted", "A process named httpd starts a shell", act.run_shell_untrusted,
        comm="httpd", upstream=("Run shell untrusted",)),
    Scenario(
        "system-user-interactive", "A program named login run as the daemon user",
        act.system_user_interactive, upstream=("System user interactive",)),
    Scenario(
        "read-sensitive-file-after-startup", "A process named nginx, 5 s old, opens /etc/shadow",
        act.read_sensitive_file_after_startup, comm="nginx", min_age=5.5,
        ours=("Sensitive File Read",),
        upstream=("Read sensitive file untrusted", "Read sensitive file trusted after startup")),
    Scenario(
        "benign", "ls, cat, sort, tar, python -c, sh -c and a loopback HTTP GET",
        act.benign_workload, listeners=("http",)),
)
SCENARIO_BY_NAME = {s.name: s for s in SCENARIOS}


class UnknownScenarioError(ValueError):
    """A scenario name that is not in the registry."""


def select(names: Iterable[str]) -> tuple[Scenario, ...]:
    """The named scenarios in registry order (all when `names` is empty)."""
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in SCENARIO_BY_NAME]
    if unknown:
        raise UnknownScenarioError(
            f"Unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIO_BY_NAME)} "
            "(`capture scenario --list` describes them)."
        )
    if not wanted:
        return SCENARIOS
    return tuple(s for s in SCENARIOS if s.name in wanted)
