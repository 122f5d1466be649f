"""Container metadata from a real Docker daemon (Debian's docker.io, started here on sockets and
directories of its own: no bridge, no iptables, its own containerd namespace).

An image made here from busybox-static (`docker import`), a container started from it with no
network, asked through the Docker Engine API as the capture asks (`/containers/ID/json`, then
the image), and a live capture that selects the container by its name and names its events
from the daemon's answers: id, type, name, image, repository, tag, image id.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import unavailable
from test_container_runtime import record_live
from trace_order import read_in_event_order

from capture.container_runtime import ContainerRuntimes, EngineClient

BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
IMAGE = "sysreplay/busybox:test"
NAME = "sysreplay-web"
START_SECONDS = 30.0


@dataclass(frozen=True)
class Daemon:
    socket: Path
    env: dict[str, str]  # for the docker CLI: DOCKER_HOST


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    if os.geteuid() != 0:
        unavailable("needs root (dockerd)")
    binary, cli = shutil.which("dockerd"), shutil.which("docker")
    if binary is None or cli is None:
        unavailable("dockerd or docker is not installed (docker.io; scripts/setup.sh)")
    assert binary is not None
    work = tmp_path_factory.mktemp("docker")
    socket = work / "docker.sock"
    log = (work / "log").open("wb")
    proc = subprocess.Popen(
        [binary, "--data-root", str(work / "data"), "--exec-root", str(work / "exec"),
         "--pidfile", str(work / "pid"), "--host", f"unix://{socket}", "--iptables=false",
         "--ip6tables=false", "--bridge=none", "--containerd-namespace", "sysreplay-test",
         "--containerd-plugins-namespace", "sysreplay-test-plugins"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not (socket.exists() and EngineClient(str(socket), 2.0).ping()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not answer on {socket}: "
                            f"{(work / 'log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield Daemon(socket, {**os.environ, "DOCKER_HOST": f"unix://{socket}"})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _rootfs_tar() -> bytes:
    """busybox with sh, sleep and cat as links: the whole image."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for tool in ("sh", "sleep", "cat"):
            link = tarfile.TarInfo(f"bin/{tool}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return out.getvalue()


@dataclass(frozen=True)
class Running:
    id: str
    image_id: str  # hex, no "sha256:"


@pytest.fixture(scope="module")
def container(dockerd: Daemon) -> Iterator[Running]:
    """NAME, reading /etc/hostname five times a second; removed after the tests."""
    if not BUSYBOX.exists():
        unavailable(f"{BUSYBOX} is missing (Debian's busybox-static; scripts/setup.sh)")

    def docker(*args: str, data: bytes | None = None) -> str:
        return subprocess.run(["docker", *args], input=data, env=dockerd.env, check=True,
                              capture_output=True).stdout.decode().strip()

    image_id = docker("import", "-", IMAGE, data=_rootfs_tar()).removeprefix("sha256:")
    cid = docker("run", "--detach", "--network", "none", "--name", NAME, IMAGE, "/bin/sh",
                 "-c", "while true; do cat /etc/hostname; sleep 0.2; done")
    try:
        yield Running(cid, image_id)
    finally:
        subprocess.run(["docker", "rm", "--force", NAME], env=dockerd.env,
                       capture_output=True)


def test_the_daemon_describes_the_container(dockerd: Daemon, container: Running) -> None:
    runtimes = ContainerRuntimes(sockets=(str(dockerd.socket),), timeout=5.0)
    try:
        info = runtimes.lookup(container.id, "docker")
        assert runtimes.lookup(NAME, "docker") == info  # by name too, as --container does
    finally:
        runtimes.close()
    assert info is not None
    assert (info.id, info.name, info.image, info.image_id, info.image_repository,
            info.image_tag, info.privileged) == \
        (container.id, NAME, IMAGE, container.image_id, "sysreplay/busybox", "test", False)


@pytest.mark.usefixtures("require_bpf")
def test_live_capture_names_a_real_docker_container(dockerd: Daemon, container: Running,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "docker.parquet"
    record_live(out, dockerd.socket, [["sleep", "1.5"]], containers=(NAME,))
    rows = read_in_event_order(out, [
        "evt.type", "proc.name", "fd.name", "container.id", "container.type",
        "container.name", "container.image", "container.image.repository",
        "container.image.tag", "container.image.id"]).to_pylist()
    opens = [r for r in rows if r["evt.type"] == "openat" and r["fd.name"] == "/etc/hostname"]
    assert opens and {r["proc.name"] for r in opens} == {"cat"}
    assert {(r["container.id"], r["container.type"], r["container.name"],
             r["container.image"], r["container.image.repository"], r["container.image.tag"],
             r["container.image.id"]) for r in rows} == \
        {(container.id[:12], "docker", NAME, IMAGE, "sysreplay/busybox", "test",
          container.image_id)}
