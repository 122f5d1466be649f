"""Container metadata from a real containerd (Debian's, started here on a socket of its own).

The client alone: `Version` in the `runtime.v1` API, `ContainerStatus` and `PodSandboxStatus`
for an id containerd does not know (gRPC NOT_FOUND: no metadata, the socket still counted as
answering), `ListImages`. Then a real pod: an image made here from busybox-static (an OCI
layout imported with `ctr`), a pod sandbox and a container started over the CRI as kubelet
does (host network: no CNI here; cgroupfs layout under /kubepods), and a live capture that
names the container's events from containerd's answers: name, image, repository, tag, image
id, pod and namespace.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from real_runtimes import (
    READ_LOOP,
    busybox_rootfs_tar,
    live_container_rows,
    runtime_binary,
    stop,
    wait_for,
)

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
from capture.protobuf_wire import Fields, map_field, message_field, string_field, varint_field

UNKNOWN = "0123456789ab" + "cdef" * 13  # 64 hex digits no container has
IMAGE = "docker.io/sysreplay/busybox:test"


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A containerd with its own root, state, config and socket; stopped after the tests."""
    binary = runtime_binary("containerd", "containerd", "ctr")
    work = tmp_path_factory.mktemp("containerd")
    config = work / "config.toml"
    # The CRI plugin's defaults but: our image as the pod sandbox's (nothing is pulled: no
    # network), and the OOM score adjustment kept within ours (runc cannot lower it here).
    config.write_text(f'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n'
                      f'  sandbox_image = "{IMAGE}"\n  restrict_oom_score_adj = true\n')
    socket = work / "containerd.sock"
    with (work / "log").open("wb") as log:
        proc = subprocess.Popen([binary, "--config", str(config), "--root", str(work / "root"),
                                 "--state", str(work / "state"), "--address", str(socket)],
                                stdout=log, stderr=subprocess.STDOUT)
    client = CriClient(str(socket), timeout=2.0)
    try:
        wait_for(proc, lambda: socket.exists() and client.ping(), work / "log")
        client.close()
        yield socket
    finally:
        stop(proc)


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


# ---- a real pod --------------------------------------------------------------------------------


def oci_image(layer: bytes, name: str) -> bytes:
    """An OCI image layout (tar) of one uncompressed layer, named `name`, whose command is
    `sleep 3600` (the pod sandbox runs it as its pause process)."""
    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    blob = layer
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sleep", "3600"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(blob)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(blob), "size": len(blob)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": name,
                                               "io.containerd.image.name": name}}]}).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index,
                 **{f"blobs/sha256/{digest(d)[7:]}": d for d in (blob, config, manifest)}}
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass(frozen=True)
class Pod:
    uid: str
    sandbox_id: str
    container_id: str
    image_id: str  # the image config's digest, hex


def _pod_config(uid: str) -> bytes:
    """PodSandboxConfig: metadata 1 (name 1, uid 2, namespace 3), labels 6, linux 8
    (cgroup_parent 1, security_context 2: namespace_options 1: network 1 = NODE 2)."""
    meta = string_field(1, "web-7f9c") + string_field(2, uid) + string_field(3, "shop")
    linux = (string_field(1, f"/kubepods/besteffort/pod{uid}")
             + message_field(2, message_field(1, varint_field(1, 2))))
    labels = {"io.kubernetes.pod.name": "web-7f9c", "io.kubernetes.pod.namespace": "shop",
              "io.kubernetes.pod.uid": uid, "app": "web"}
    return message_field(1, meta) + map_field(6, labels) + message_field(8, linux)


@pytest.fixture(scope="module")
def pod(containerd: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """A pod sandbox and one container (`api`, reading /etc/hostname five times a second),
    made over the CRI as kubelet makes them; removed after the tests."""
    work = tmp_path_factory.mktemp("image")
    (work / "image.tar").write_bytes(oci_image(busybox_rootfs_tar(), IMAGE))
    subprocess.run(["ctr", "--address", str(containerd), "--namespace", "k8s.io", "images",
                    "import", str(work / "image.tar")], check=True, capture_output=True)
    client = CriClient(str(containerd), timeout=60.0)
    uid = str(uuid.uuid4())
    sandbox_config = _pod_config(uid)
    sandbox = Fields.parse(client.call(RUNTIME_SERVICE, "RunPodSandbox",
                                       message_field(1, sandbox_config))).string(1)
    try:
        image_id = parse_image_id(client.call(IMAGE_SERVICE, "ListImages",
                                              list_images_request(IMAGE)))
        # ContainerConfig: metadata 1 (name 1), image 2 (ImageSpec: image 1; kubelet names the
        # image by its id), command 3, args 4, labels 9 (kubelet's pod labels).
        labels = {"io.kubernetes.container.name": "api", "io.kubernetes.pod.name": "web-7f9c",
                  "io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.uid": uid}
        config = (message_field(1, string_field(1, "api"))
                  + message_field(2, string_field(1, f"sha256:{image_id}"))
                  + string_field(3, READ_LOOP[0])
                  + b"".join(string_field(4, arg) for arg in READ_LOOP[1:])
                  + map_field(9, labels))
        container = Fields.parse(client.call(
            RUNTIME_SERVICE, "CreateContainer", string_field(1, sandbox)
            + message_field(2, config) + message_field(3, sandbox_config))).string(1)
        client.call(RUNTIME_SERVICE, "StartContainer", string_field(1, container))
        yield Pod(uid, sandbox, container, image_id)
    finally:
        for method in ("StopPodSandbox", "RemovePodSandbox"):
            with contextlib.suppress(LookupError):
                client.call(RUNTIME_SERVICE, method, string_field(1, sandbox))
        client.close()
        # The pod's cgroup parent is kubelet's to remove; runc leaves it in every hierarchy.
        for path in glob.glob(f"/sys/fs/cgroup/**/kubepods/besteffort/pod{uid}",
                              recursive=True):
            with contextlib.suppress(OSError):
                os.rmdir(path)


def test_containerd_describes_the_pod_s_container(containerd: Path, pod: Pod) -> None:
    client = CriClient(str(containerd), timeout=5.0)
    try:
        info = client.status(pod.container_id)
        sandbox = client.status(pod.sandbox_id)
    finally:
        client.close()
    assert info is not None and sandbox is not None
    assert (info.name, info.image, info.image_repository, info.image_tag, info.image_id) == \
        ("api", IMAGE, "docker.io/sysreplay/busybox", "test", pod.image_id)
    assert info.label("io.kubernetes.pod.name") == "web-7f9c" and not info.privileged
    assert (sandbox.name, sandbox.label("io.kubernetes.pod.namespace")) == ("web-7f9c", "shop")


@pytest.mark.usefixtures("require_bpf")
def test_live_capture_names_a_real_containerd_container(containerd: Path, pod: Pod,
                                                        tmp_path: Path) -> None:
    """The container's own `cat /etc/hostname` calls, recorded with containerd's socket given
    and the container selected by its name (a name is known only from the runtime)."""
    rows = live_container_rows(tmp_path / "pod.parquet", containerd, "api",
                               ("k8s.pod.name", "k8s.ns.name"))
    assert set(rows) == {(pod.container_id[:12], "containerd", "api", IMAGE,
                          "docker.io/sysreplay/busybox", "test", pod.image_id, "web-7f9c",
                          "shop")}
