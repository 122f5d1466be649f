"""Container names and images from containerd and CRI-O, over the Kubernetes CRI (gRPC).

containerd and CRI-O do not speak the Docker Engine API: they serve the kubelet's Container
Runtime Interface, gRPC on a unix socket. libsinsp asks it (container_engine/cri.cpp, cri.hpp),
and so does `CriClient`, with the same calls and the same reading of their answers:

- `RuntimeService/ContainerStatus` (verbose): name (`status.metadata.name`), labels (kubelet puts
  the pod's name, namespace and uid there), mounts, and the image from `status.image.image` and
  `status.image_ref` (`cri_image`); the verbose `info` JSON (containerd's holds the container
  config and the OCI runtime spec, CRI-O's the spec and a `privileged` flag) gives privileged,
  the image id and, when the status names the image only by its id, its name (annotations);
- `RuntimeService/PodSandboxStatus` when the id is not a container's but a pod sandbox's (the
  pause process): the pod's name, namespace, uid and labels;
- `ImageService/ListImages` for the image id when neither the status nor `info` has it.

Messages are written and read with capture/protobuf_wire.py (no generated stubs): grpcio only
carries the bytes. `runtime.v1` is asked first, `runtime.v1alpha2` when a runtime predates it
(containerd < 1.5, CRI-O < 1.20); the version that worked is kept per socket.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from capture.container_info import (
    LOOKUP_TIMEOUT,
    MAX_BODY,
    ContainerInfo,
    EngineUnavailable,
    Mount,
    split_image,
)
from capture.protobuf_wire import (
    Fields,
    WireError,
    bool_field,
    message_field,
    string_field,
)

API_VERSIONS = ("runtime.v1", "runtime.v1alpha2")
RUNTIME_SERVICE, IMAGE_SERVICE = "RuntimeService", "ImageService"
POD_LABELS = ("io.kubernetes.pod.name", "io.kubernetes.pod.namespace", "io.kubernetes.pod.uid")
# Mount.propagation (MountPropagation), named as libsinsp names them
PROPAGATION = {0: "private", 1: "rslave", 2: "rshared"}
# annotations naming the image when the status gives only its id (containerd, CRI-O, older CRI-O)
IMAGE_NAME_ANNOTATIONS = ("io.kubernetes.cri.image-name", "io.kubernetes.cri-o.Image",
                          "io.kubernetes.cri-o.ImageName")
# gRPC status codes (by name) that say the socket cannot be asked, rather than that the runtime
# does not know the id: the socket is then left alone for a while
UNAVAILABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL",
                               "RESOURCE_EXHAUSTED", "UNAUTHENTICATED", "PERMISSION_DENIED",
                               "CANCELLED", "DATA_LOSS"})


# ---- requests -----------------------------------------------------------------------------------

def version_request() -> bytes:
    """VersionRequest {version = 1}."""
    return string_field(1, "v1")


def container_status_request(container_id: str) -> bytes:
    """ContainerStatusRequest {container_id = 1; verbose = 2}."""
    return string_field(1, container_id) + bool_field(2, True)


def pod_sandbox_status_request(sandbox_id: str) -> bytes:
    """PodSandboxStatusRequest {pod_sandbox_id = 1; verbose = 2}."""
    return string_field(1, sandbox_id) + bool_field(2, True)


def list_images_request(image: str) -> bytes:
    """ListImagesRequest {filter = 1: ImageFilter {image = 1: ImageSpec {image = 1}}}."""
    return message_field(1, message_field(1, string_field(1, image)))


# ---- answers ------------------------------------------------------------------------------------

def parse_version(data: bytes) -> str:
    """The runtime's name (VersionResponse.runtime_name = 2)."""
    return Fields.parse(data).string(2)


def parse_container_status(data: bytes) -> ContainerInfo | None:
    """A ContainerStatusResponse as a ContainerInfo (None without a status); raises WireError."""
    return read_container_status(data)[0]


def read_container_status(data: bytes) -> tuple[ContainerInfo | None, str]:
    """(ContainerInfo, image_ref) of a ContainerStatusResponse; raises WireError.

    ContainerStatus: id 1, metadata 2 (name 1), image 8 (ImageSpec: image 1), image_ref 9,
    labels 12, mounts 14, image_id 17; the response's info (2) maps "info" to a JSON text."""
    response = Fields.parse(data)
    status = response.message(1)
    if not response.has(1) or not status.string(1):
        return None, ""
    doc = info_document(response.string_map(2))
    image_ref = status.string(9)
    image, repository, tag, digest = cri_image(status.message(8).string(1), image_ref, doc)
    return ContainerInfo(
        id=status.string(1), name=status.message(2).string(1), image=image,
        image_id=_image_id(status.string(17)) or _info_image_id(doc),
        image_repository=repository, image_tag=tag, image_digest=digest,
        privileged=info_privileged(doc), labels=tuple(sorted(status.string_map(12).items())),
        mounts=tuple(_mount(m) for m in status.messages(14))), image_ref


def parse_pod_sandbox_status(data: bytes) -> ContainerInfo | None:
    """A PodSandboxStatusResponse as the ContainerInfo of the sandbox (its pause process), as
    libsinsp fills it: the pod's name as the name, no image, the sandbox's labels plus the
    pod's name, namespace and uid. PodSandboxStatus: id 1, metadata 2 (name 1, uid 2,
    namespace 3), labels 7."""
    response = Fields.parse(data)
    status = response.message(1)
    if not response.has(1) or not status.string(1):
        return None
    meta = status.message(2)
    labels = status.string_map(7)
    labels.update(zip(POD_LABELS, (meta.string(1), meta.string(3), meta.string(2)),
                      strict=True))
    return ContainerInfo(id=status.string(1), name=meta.string(1), image="",
                         labels=tuple(sorted(labels.items())))


def parse_image_id(data: bytes) -> str:
    """The id of the one image a ListImagesResponse (images 1: Image {id 1}) lists; "" when it
    lists none or several (libsinsp's rule)."""
    images = Fields.parse(data).messages(1)
    return _image_id(images[0].string(1)) if len(images) == 1 else ""


def info_document(info: Mapping[str, str]) -> dict[str, Any]:
    """The verbose `info["info"]` JSON object ({} when absent or not an object)."""
    try:
        doc = json.loads(info.get("info", ""))
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
        return {}
    return doc if isinstance(doc, dict) else {}


def cri_image(image: str, image_ref: str, doc: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(image, repository, tag, digest) as libsinsp's `parse_cri_image` reads them.

    `image_ref` is `repo@sha256:...` (then the repository comes from it and the tag from
    `image`) or `sha256:...` (a digest alone). When `image` is empty or only an id, the image's
    name comes from the runtime spec's annotations. Unlike libsinsp, a tag is not taken from an
    id (`sha256:<id>` has none), and an empty one is not appended as a bare ':'."""
    name, tag_from_image = image, False
    at = image_ref.find("sha256:")
    digest = image_ref if at == 0 else ""
    if at > 0 and image_ref[at - 1] == "@":
        name, digest, tag_from_image = image_ref[:at - 1], image_ref[at:], True
    if not name or name.startswith("sha256"):
        annotations = _obj(_obj(doc.get("runtimeSpec")).get("annotations"))
        named = next((annotations[k] for k in IMAGE_NAME_ANNOTATIONS
                      if isinstance(annotations.get(k), str)), None)
        if named is not None:
            name, tag_from_image = named, False
    repository, tag, name_digest = split_image(name)
    if tag_from_image:
        tag = "" if image.startswith("sha256:") else split_image(image)[1]
        name = f"{name}:{tag}" if tag else name
    return name, repository, tag, digest or name_digest


def info_privileged(doc: Mapping[str, Any]) -> bool:
    """`container.privileged` from the verbose info, where libsinsp looks: the runtime spec's
    `linux.security_context` (old containerd), the config's (containerd), then `privileged`
    (CRI-O)."""
    for path in (("runtimeSpec", "linux", "security_context", "privileged"),
                 ("config", "linux", "security_context", "privileged"), ("privileged",)):
        value: Any = doc
        for key in path:
            value = _obj(value).get(key)
        if isinstance(value, bool):
            return value
    return False


def _info_image_id(doc: Mapping[str, Any]) -> str:
    """containerd's `config.image.image`: the image id the container was created from."""
    image = _obj(_obj(doc.get("config")).get("image")).get("image")
    return _image_id(image) if isinstance(image, str) else ""


def _image_id(value: str) -> str:
    return value.partition(":")[2] if ":" in value else value


def _mount(m: Fields) -> Mount:
    """Mount: container_path 1, host_path 2, readonly 3, propagation 5 (no mode in CRI)."""
    return Mount(m.string(2), m.string(1), "", not m.boolean(3),
                 PROPAGATION.get(m.integer(5), "unknown"))


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# ---- the client ---------------------------------------------------------------------------------

def load_grpc() -> Any:
    """grpcio, imported when a CRI socket is first asked (only machines with one pay for its
    import and threads), with its C core's logging down to errors: it would otherwise print
    INFO lines (a runtime restarting: "Got goaway") over the capture's progress."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    import grpc

    return grpc


@dataclass
class CriClient:
    """The CRI on one unix socket. One gRPC channel, opened at the first call."""

    path: str
    timeout: float = LOOKUP_TIMEOUT
    api_version: str = API_VERSIONS[0]  # the one that answered last
    _channel: Any = field(default=None, repr=False)

    def call(self, service: str, method: str, request: bytes) -> bytes:
        """The answer's bytes; raises EngineUnavailable when the socket cannot be asked, and
        LookupError when the runtime answered with an error (not found, mostly)."""
        grpc = load_grpc()
        if self._channel is None:
            self._channel = grpc.insecure_channel(
                f"unix:{self.path}",
                options=[("grpc.max_receive_message_length", MAX_BODY),
                         ("grpc.enable_retries", 0), ("grpc.enable_http_proxy", 0)])
        versions = [self.api_version, *(v for v in API_VERSIONS if v != self.api_version)]
        for version in versions:
            stub = self._channel.unary_unary(f"/{version}.{service}/{method}")
            try:
                answer = stub(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                code = getattr(exc.code(), "name", "UNKNOWN")  # a grpc.Call is the RpcError
                if code == "UNIMPLEMENTED" and version != versions[-1]:
                    continue  # an older runtime: ask in the next API version
                if code in UNAVAILABLE_CODES:
                    # A fresh channel next time: gRPC's own reconnect backoff (up to minutes)
                    # would otherwise outlast ours.
                    self.close()
                    raise EngineUnavailable(f"{self.path}: {code}: {exc.details()}") from exc
                raise LookupError(f"{self.path}: {code}: {exc.details()}") from exc
            self.api_version = version
            return answer if isinstance(answer, bytes) else b""
        raise EngineUnavailable(f"{self.path}: no CRI API version answered")

    def ping(self) -> bool:
        """Whether a CRI runtime answers `Version` now."""
        try:
            return bool(parse_version(self.call(RUNTIME_SERVICE, "Version", version_request())))
        except (EngineUnavailable, LookupError, WireError):
            return False

    def status(self, ref: str) -> ContainerInfo | None:
        """The container (or pod sandbox) with this id or unique id prefix; None when the
        runtime knows neither. Raises EngineUnavailable (also for answers that are not CRI)."""
        try:
            try:
                answer = self.call(RUNTIME_SERVICE, "ContainerStatus",
                                   container_status_request(ref))
            except LookupError:
                return self._sandbox(ref)
            info, image_ref = read_container_status(answer)
        except WireError as exc:
            raise EngineUnavailable(f"{self.path}: not a CRI answer ({exc})") from exc
        if info is not None and not info.image_id and image_ref:
            info = replace(info, image_id=self._listed_image_id(image_ref))
        return info

    def _sandbox(self, ref: str) -> ContainerInfo | None:
        """libsinsp's fallback: an id that is no container's may be a pod sandbox's."""
        try:
            return parse_pod_sandbox_status(self.call(
                RUNTIME_SERVICE, "PodSandboxStatus", pod_sandbox_status_request(ref)))
        except LookupError:
            return None

    def _listed_image_id(self, image_ref: str) -> str:
        """libsinsp's extra query: the image id from ListImages, filtered by the image ref.
        Whatever fails here leaves the id empty, not the container unknown."""
        try:
            return parse_image_id(self.call(IMAGE_SERVICE, "ListImages",
                                            list_images_request(image_ref)))
        except (LookupError, EngineUnavailable, WireError):
            return ""

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
