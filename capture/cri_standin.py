"""A stand-in CRI runtime (containerd or CRI-O) on a unix socket, for tests and sandboxes.

No container engine runs where the tests do, yet the CRI client (capture/cri_runtime.py) must be
tried against a real gRPC server on a real socket. `serve_cri_api` serves, from grpcio's server
threads, the calls the client makes, with answers shaped like containerd's or CRI-O's
(`runtime=`): `Version`, `ContainerStatus` (verbose: containerd's `info` holds the container
config and the OCI spec, CRI-O's the spec and `privileged`), `PodSandboxStatus` and `ListImages`.
Ids resolve as the runtimes resolve them: the full id or a unique prefix; an unknown id is
NOT_FOUND. Answers are encoded with capture/protobuf_wire.py, field numbers as in
k8s.io/cri-api's api.proto.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capture.container_info import ContainerInfo, split_image
from capture.cri_runtime import API_VERSIONS, POD_LABELS, PROPAGATION, load_grpc
from capture.protobuf_wire import (
    Fields,
    bool_field,
    map_field,
    message_field,
    string_field,
    varint_field,
)

CREATED_NS = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
CONTAINER_RUNNING = 1
_PROPAGATION_NUMBER = {name: number for number, name in PROPAGATION.items()}


@dataclass
class CriStandin:
    """A running `serve_cri_api`: its socket and the (method, id) pairs it was asked for."""

    socket_path: Path
    containers: Mapping[str, ContainerInfo]
    sandboxes: Mapping[str, ContainerInfo]
    runtime: str
    requests: list[tuple[str, str]] = field(default_factory=list)


def image_name(info: ContainerInfo) -> str:
    """The `repository:tag` the runtime reports in `status.image.image`."""
    repository, tag, _ = split_image(info.image)
    return f"{info.image_repository or repository}:{info.image_tag or tag or 'latest'}"


def image_ref(info: ContainerInfo) -> str:
    """`status.image_ref`: `repository@digest`, or the image id when there is no digest."""
    if info.image_digest:
        return f"{split_image(image_name(info))[0]}@{info.image_digest}"
    return f"sha256:{info.image_id}" if info.image_id else ""


def verbose_info(container_id: str, info: ContainerInfo, runtime: str) -> dict[str, Any]:
    """The `info` JSON of a verbose ContainerStatus, as containerd or CRI-O writes it."""
    spec = {"ociVersion": "1.1.0", "process": {"user": {"uid": 0, "gid": 0},
                                               "args": ["/bin/sh"], "cwd": "/"},
            "root": {"path": "rootfs"}, "linux": {"namespaces": [{"type": "pid"}]}}
    sandbox_id = info.label("io.kubernetes.sandbox.id") or ""
    if runtime == "cri-o":
        spec["annotations"] = {"io.kubernetes.cri-o.ImageName": image_name(info),
                               "io.kubernetes.cri-o.ContainerID": container_id}
        return {"sandboxID": sandbox_id, "pid": 0, "privileged": info.privileged,
                "runtimeSpec": spec}
    spec["annotations"] = {"io.kubernetes.cri.container-type": "container",
                           "io.kubernetes.cri.container-name": info.name,
                           "io.kubernetes.cri.image-name": image_name(info),
                           "io.kubernetes.cri.sandbox-id": sandbox_id}
    config = {"metadata": {"name": info.name},
              "image": {"image": f"sha256:{info.image_id}" if info.image_id else ""},
              "labels": dict(info.labels), "annotations": {},
              "linux": {"resources": {}, "security_context": {"privileged": info.privileged}}}
    return {"sandboxID": sandbox_id, "pid": 0, "removing": False, "snapshotKey": container_id,
            "snapshotter": "overlayfs", "runtimeType": "io.containerd.runc.v2",
            "config": config, "runtimeSpec": spec}


def container_status_response(container_id: str, info: ContainerInfo, runtime: str) -> bytes:
    """The ContainerStatusResponse (verbose) for `info`."""
    mounts = b"".join(message_field(14, string_field(1, m.dest) + string_field(2, m.source)
                                    + bool_field(3, not m.rw)
                                    + varint_field(5, _PROPAGATION_NUMBER.get(m.propagation, 0)))
                      for m in info.mounts)
    status = (string_field(1, container_id) + message_field(2, string_field(1, info.name))
              + varint_field(3, CONTAINER_RUNNING) + varint_field(4, CREATED_NS)
              + varint_field(5, CREATED_NS) + message_field(8, string_field(1, image_name(info)))
              + string_field(9, image_ref(info)) + map_field(12, dict(info.labels)) + mounts
              + string_field(15, f"/var/log/pods/{container_id}.log"))
    doc = json.dumps(verbose_info(container_id, info, runtime))
    return message_field(1, status) + map_field(2, {"info": doc})


def pod_sandbox_status_response(sandbox_id: str, info: ContainerInfo) -> bytes:
    """The PodSandboxStatusResponse for a sandbox: `info.name` is the pod's name; its labels
    give the namespace and uid (POD_LABELS) and the sandbox's other labels."""
    name, namespace, uid = (info.label(k) or "" for k in POD_LABELS)
    labels = dict(info.labels)  # kubelet labels a sandbox with the pod's labels and these
    metadata = string_field(1, info.name or name) + string_field(2, uid) \
        + string_field(3, namespace)
    status = (string_field(1, sandbox_id) + message_field(2, metadata)
              + varint_field(4, CREATED_NS) + map_field(7, labels))
    return message_field(1, status) + map_field(2, {"info": json.dumps({"pid": 0})})


def list_images_response(infos: Sequence[ContainerInfo]) -> bytes:
    return b"".join(message_field(1, string_field(1, f"sha256:{i.image_id}")
                                  + string_field(2, image_name(i))) for i in infos)


def _find(known: Mapping[str, ContainerInfo], ref: str) -> str | None:
    """The id `ref` names: itself, or the one id it is a prefix of."""
    if ref in known:
        return ref
    found = [cid for cid in known if ref and cid.startswith(ref)]
    return found[0] if len(found) == 1 else None


def _handlers(state: CriStandin) -> dict[str, Callable[[bytes], bytes | None]]:
    """Method name -> the answer to a request (None: NOT_FOUND)."""
    def container_status(request: bytes) -> bytes | None:
        ref = Fields.parse(request).string(1)
        state.requests.append(("ContainerStatus", ref))
        cid = _find(state.containers, ref)
        return None if cid is None else \
            container_status_response(cid, state.containers[cid], state.runtime)

    def sandbox_status(request: bytes) -> bytes | None:
        ref = Fields.parse(request).string(1)
        state.requests.append(("PodSandboxStatus", ref))
        sid = _find(state.sandboxes, ref)
        return None if sid is None else pod_sandbox_status_response(sid, state.sandboxes[sid])

    def list_images(request: bytes) -> bytes:
        wanted = Fields.parse(request).message(1).message(1).string(1)
        state.requests.append(("ListImages", wanted))
        return list_images_response([i for i in state.containers.values()
                                     if i.image_id and wanted in (image_ref(i), image_name(i))])

    def version(request: bytes) -> bytes:
        state.requests.append(("Version", ""))
        return (string_field(1, "0.1.0") + string_field(2, state.runtime)
                + string_field(3, "v0.0.0-sysreplay-standin") + string_field(4, "v1"))

    return {"RuntimeService/Version": version, "RuntimeService/ContainerStatus": container_status,
            "RuntimeService/PodSandboxStatus": sandbox_status,
            "ImageService/ListImages": list_images}


@contextlib.contextmanager
def serve_cri_api(socket_path: Path, containers: Mapping[str, ContainerInfo],
                  sandboxes: Mapping[str, ContainerInfo] | None = None,
                  runtime: str = "containerd",
                  api_versions: Sequence[str] = API_VERSIONS[:1]) -> Iterator[CriStandin]:
    """Serve a stand-in CRI on `socket_path` while inside. `containers` and `sandboxes` map
    full ids to what the runtime says about them; `runtime` ("containerd" or "cri-o") shapes
    the answers; `api_versions` are the CRI packages served (runtime.v1, runtime.v1alpha2)."""
    grpc = load_grpc()
    socket_path = Path(socket_path)
    state = CriStandin(socket_path, dict(containers), dict(sandboxes or {}), runtime)
    methods = _handlers(state)

    def unary(method: Callable[[bytes], bytes | None]) -> Any:
        def handle(request: bytes, context: Any) -> bytes:
            answer = method(request)
            if answer is None:
                context.abort(grpc.StatusCode.NOT_FOUND, "an error occurred when try to find "
                              "container: not found")
            return answer or b""
        return grpc.unary_unary_rpc_method_handler(handle)

    services: dict[str, dict[str, Any]] = {}
    for version in api_versions:
        for name, method in methods.items():
            service, _, rpc = name.partition("/")
            services.setdefault(f"{version}.{service}", {})[rpc] = unary(method)
    generic = [grpc.method_handlers_generic_handler(service, rpcs)
               for service, rpcs in services.items()]  # other methods: UNIMPLEMENTED
    server = grpc.server(ThreadPoolExecutor(max_workers=4, thread_name_prefix="cri-standin"))
    server.add_generic_rpc_handlers(generic)
    if not server.add_insecure_port(f"unix:{socket_path}"):
        raise OSError(f"cannot serve the stand-in CRI on {socket_path}")
    server.start()
    try:
        yield state
    finally:
        server.stop(grace=None).wait(5)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
