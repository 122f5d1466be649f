"""The CRI client against a real containerd (Debian's, started here on a socket of its own).

No container can run on this machine kind (runc and crun refuse its cgroup setup), so what a
real runtime says about a running container is only tested against the stand-in
(tests/test_cri_runtime.py). What is tested here is everything up to that: the gRPC channel on
a unix socket, the `runtime.v1` service names and message encodings as containerd reads them,
and its answers decoded by our protobuf reader: `Version`, `ContainerStatus` and
`PodSandboxStatus` for an id it does not know (gRPC NOT_FOUND, read as "no metadata", the
socket still counted as answering), and `ListImages`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import unavailable

from capture.container_runtime import ContainerRuntimes
from capture.cri_runtime import (
    IMAGE_SERVICE,
    RUNTIME_SERVICE,
    CriClient,
    list_images_request,
    parse_image_id,
    parse_version,
    version_request,
)

UNKNOWN = "0123456789ab" + "cdef" * 13  # 64 hex digits no container has
START_SECONDS = 20.0


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A containerd with its own root, state, config and socket; stopped after the tests."""
    import os

    if os.geteuid() != 0:
        unavailable("needs root (containerd)")
    binary = shutil.which("containerd")
    if binary is None:
        unavailable("containerd is not installed (scripts/setup.sh installs it)")
    assert binary is not None
    work = tmp_path_factory.mktemp("containerd")
    config = work / "config.toml"
    config.write_text("version = 2\n")  # defaults: the CRI plugin on, no TCP service
    socket = work / "containerd.sock"
    log = (work / "log").open("wb")
    proc = subprocess.Popen([binary, "--config", str(config), "--root", str(work / "root"),
                             "--state", str(work / "state"), "--address", str(socket)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_SECONDS
        client = CriClient(str(socket), timeout=2.0)
        while not (socket.exists() and client.ping()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"containerd did not answer on {socket}: "
                            f"{(work / 'log').read_text()[-2000:]}")
            time.sleep(0.2)
        client.close()
        yield socket
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_containerd_answers_version_in_the_v1_api(containerd: Path) -> None:
    client = CriClient(str(containerd), timeout=2.0)
    try:
        assert client.ping()
        assert client.api_version == "runtime.v1"
        assert parse_version(client.call(RUNTIME_SERVICE, "Version", version_request())) == \
            "containerd"
    finally:
        client.close()


def test_an_unknown_container_is_no_metadata(containerd: Path) -> None:
    client = CriClient(str(containerd), timeout=2.0)
    try:
        assert client.status(UNKNOWN) is None  # ContainerStatus, then PodSandboxStatus
        assert client.status(UNKNOWN[:12]) is None
    finally:
        client.close()


def test_list_images_reads_an_empty_store(containerd: Path) -> None:
    client = CriClient(str(containerd), timeout=2.0)
    try:
        answer = client.call(IMAGE_SERVICE, "ListImages",
                             list_images_request("docker.io/library/busybox:latest"))
        assert parse_image_id(answer) == ""
    finally:
        client.close()


def test_the_capture_s_lookup_counts_containerd_as_answering(containerd: Path) -> None:
    runtimes = ContainerRuntimes(cri_sockets=(str(containerd),), timeout=2.0)
    try:
        assert runtimes.ping() == (str(containerd),)
        assert runtimes.lookup(UNKNOWN, "containerd") is None
        assert str(containerd) in runtimes.answered and runtimes.lookups == 1
    finally:
        runtimes.close()
