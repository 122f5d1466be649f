"""Container names and images from the runtime's API, as Falco's container plugin gets them.

The kernel tells a process's container only by its cgroup path (capture/proc_table.py
`container_of`: id and runtime type). Name, image and the other `container.*` fields come from the
runtime that runs the container, over its unix socket, in the API that runtime speaks:

- Docker and podman: the Docker Engine API (podman's socket is Docker-compatible). `parse_inspect`
  reads a `GET /containers/{id}/json` answer the way libsinsp's docker source does (name without
  its leading '/', `Config.Image`, the image id from `Image`, repository/tag/digest split by
  `split_image` and completed from `GET /images/{id}/json`, `HostConfig.Privileged`,
  `Config.Labels`, `Mounts`); `EngineClient` asks it (stdlib http.client on an AF_UNIX socket).
- containerd and CRI-O: the Kubernetes CRI over gRPC (capture/cri_runtime.py `CriClient`).
- `ContainerRuntimes`: which sockets to ask for a container, chosen by its `container.type` (the
  form of its cgroup path): the given sockets (`--runtime-socket`), else each API's usual ones
  that exist. One answer is cached per container (misses too, retried after a while); a socket
  that fails (absent, refusing, silent, answering garbage) is left alone for a while, and one
  that answered in one API is not asked in the other: a lookup never raises and never stalls
  the capture loop for more than the timeout.
- `serve_engine_api`: a minimal stand-in of the Docker Engine API, served from a thread on a unix
  socket, for sandboxes and tests on machines where no engine runs (capture/cri_standin.py is
  the CRI's).

`ContainerInfo`, `Mount`, `split_image` and `EngineUnavailable` live in capture/container_info.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from capture.container_info import (
    LOOKUP_TIMEOUT,
    MAX_BODY,
    ContainerInfo,
    EngineUnavailable,
    Mount,
    split_image,
)
from capture.cri_runtime import CriClient

SOCKET_BACKOFF = 30.0  # seconds a failing socket is left alone
MISS_RETRY = 10.0  # seconds before a container the engines did not know is asked for again
DEFAULT_SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
# containerd's, CRI-O's, k3s's containerd and Bottlerocket's host containerd (libsinsp's list)
DEFAULT_CRI_SOCKETS = ("/run/containerd/containerd.sock", "/run/crio/crio.sock",
                       "/run/k3s/containerd/containerd.sock",
                       "/run/host-containerd/containerd.sock")
DOCKER_API, CRI_API = "docker", "cri"
DOCKER_API_TYPES = frozenset({"docker", "podman"})  # container.type values each API serves
CRI_TYPES = frozenset({"containerd", "cri-o"})
RUNTIME_TYPES = DOCKER_API_TYPES | CRI_TYPES  # those a runtime can say more about
# A socket whose path names the container's runtime is asked first.
_PATH_HINT = {"docker": "docker", "podman": "podman", "containerd": "containerd", "cri-o": "crio"}
STANDIN_API_VERSION = "1.43"
_API_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")


# ---- the Docker Engine API's JSON --------------------------------------------------------------

def parse_inspect(doc: Any) -> ContainerInfo | None:
    """A `GET /containers/{id}/json` answer as a ContainerInfo; None when it is not one."""
    if not isinstance(doc, dict) or not isinstance(doc.get("Id"), str) or not doc["Id"]:
        return None
    config, host = _obj(doc.get("Config")), _obj(doc.get("HostConfig"))
    image = _str(config.get("Image"))
    image_field = _str(doc.get("Image"))
    # Docker puts the image id ("sha256:...") in `Image`; podman puts a name there (with '/').
    image_id = "" if "/" in image_field else image_field.partition(":")[2]
    repository, tag, digest = split_image(image_field if "/" in image_field else image)
    labels = tuple(sorted((str(k), v) for k, v in _obj(config.get("Labels")).items()
                          if isinstance(v, str)))
    mounts = tuple(Mount(_str(m.get("Source")), _str(m.get("Destination")), _str(m.get("Mode")),
                         m.get("RW") is True, _str(m.get("Propagation")))
                   for m in doc.get("Mounts") or () if isinstance(m, dict))
    return ContainerInfo(
        id=doc["Id"], name=_str(doc.get("Name")).removeprefix("/"), image=image,
        image_id=image_id, image_repository=repository, image_tag=tag, image_digest=digest,
        privileged=host.get("Privileged") is True, labels=labels, mounts=mounts)


def started_by_image_id(info: ContainerInfo, image_field: str) -> bool:
    """True when the container was started by image id (`docker run 3f57d9401f8d`): its
    `Config.Image` names no repository, which must then come from the image's RepoTags."""
    return bool(info.image_id) and (info.image_id.startswith(info.image)
                                    or image_field.startswith(info.image))


def with_image_inspect(info: ContainerInfo, doc: Any) -> ContainerInfo:
    """Complete repository/tag/digest from a `GET /images/{id}/json` answer (RepoTags,
    RepoDigests, podman's Digest), as libsinsp's `parse_image_info` does."""
    doc = _obj(doc)
    repository, tag, digest = info.image_repository, info.image_tag, info.image_digest
    if isinstance(doc.get("Digest"), str):
        digest = doc["Digest"]
    else:
        digests = set()
        for item in [d for d in doc.get("RepoDigests") or () if isinstance(d, str)]:
            repo, _, found = item.partition("@")
            digests.add(found)
            repository = repository or repo
            if repository in item:
                digest = found
                break
        if not digest and len(digests) == 1:
            digest = digests.pop()
    for item in [t for t in doc.get("RepoTags") or () if isinstance(t, str)]:
        repository = repository or item.rpartition(":")[0]
        if repository in item:
            tag = item.rpartition(":")[2]
            break
    return replace(info, image_repository=repository, image_tag=tag, image_digest=digest)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


# ---- the client ---------------------------------------------------------------------------------

class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass
class EngineClient:
    """The Docker Engine API on one unix socket."""

    path: str
    timeout: float = LOOKUP_TIMEOUT

    def get(self, url: str) -> tuple[int, Any]:
        """(status, parsed JSON body) of `GET url`; raises EngineUnavailable."""
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.request("GET", url, headers={"Accept": "application/json"})
            response = conn.getresponse()
            body = response.read(MAX_BODY + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise EngineUnavailable(f"{self.path}: {exc or type(exc).__name__}") from exc
        finally:
            conn.close()
        if len(body) > MAX_BODY:
            raise EngineUnavailable(f"{self.path}: answer larger than {MAX_BODY} bytes")
        try:
            return response.status, json.loads(body) if body.strip() else None
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise EngineUnavailable(f"{self.path}: not JSON ({exc})") from exc

    def ping(self) -> bool:
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.request("GET", "/_ping")
            response = conn.getresponse()
            return response.status == 200 and response.read(64).strip() == b"OK"
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def inspect(self, ref: str) -> ContainerInfo | None:
        """The container with this id, unique id prefix or name; None if the engine does not
        know it. Raises EngineUnavailable."""
        status, doc = self.get(f"/containers/{_quote(ref)}/json")
        if status != 200:
            return None
        info = parse_inspect(doc)
        if info is None:
            raise EngineUnavailable(f"{self.path}: not a container inspect answer")
        by_id = started_by_image_id(info, _str(doc.get("Image")))
        if by_id:  # the name is an id: repository and tag can only come from the image
            info = replace(info, image_repository="", image_tag="")
        if info.image_id and (by_id or not info.image_digest or not info.image_tag):
            status, image_doc = self.get(f"/images/{info.image_id}/json")
            if status == 200:
                info = with_image_inspect(info, image_doc)
        return info if info.image_tag else replace(info, image_tag="latest")


def _quote(ref: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else f"%{ord(c):02X}" for c in ref)


def candidate_sockets(explicit: Sequence[str] = (),
                      environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The Docker Engine API sockets to ask: the given ones; else DOCKER_HOST (unix:// only)
    and the usual Docker and podman paths, those that exist."""
    if explicit:
        return tuple(dict.fromkeys(explicit))
    environ = os.environ if environ is None else environ
    found = []
    host = environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        found.append(host[len("unix://"):])
    found += [*DEFAULT_SOCKETS, f"/run/user/{os.getuid()}/podman/podman.sock"]
    return tuple(p for p in dict.fromkeys(found) if Path(p).exists())


def candidate_cri_sockets(explicit: Sequence[str] = (),
                          environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The CRI sockets to ask: the given ones; else CONTAINER_RUNTIME_ENDPOINT (unix:// only,
    as crictl reads it) and the usual containerd and CRI-O paths, those that exist."""
    if explicit:
        return tuple(dict.fromkeys(explicit))
    environ = os.environ if environ is None else environ
    endpoint = environ.get("CONTAINER_RUNTIME_ENDPOINT", "")
    found = [endpoint[len("unix://"):]] if endpoint.startswith("unix://") else []
    found += DEFAULT_CRI_SOCKETS
    return tuple(p for p in dict.fromkeys(found) if Path(p).exists())


@dataclass
class ContainerRuntimes:
    """Container lookups over the runtimes' sockets: cached per reference, never raising.

    `sockets` speak the Docker Engine API, `cri_sockets` the CRI; a socket given in both (as
    `--runtime-socket` does) is asked in the API its container's type needs, and once it has
    answered in one API it is asked in that one only."""

    sockets: tuple[str, ...] = ()
    timeout: float = LOOKUP_TIMEOUT
    clock: Callable[[], float] = time.monotonic
    cri_sockets: tuple[str, ...] = ()
    answered: set[str] = field(default_factory=set)  # sockets that gave a valid answer
    lookups: int = 0  # requests made (for tests and stats)
    _cache: dict[tuple[str, str], tuple[ContainerInfo | None, float]] = \
        field(default_factory=dict)
    _down_until: dict[tuple[str, str], float] = field(default_factory=dict)
    _speaks: dict[str, str] = field(default_factory=dict)  # socket -> the API it answered in
    _cri: dict[str, CriClient] = field(default_factory=dict)

    @staticmethod
    def detect(explicit: Sequence[str] = (), timeout: float = LOOKUP_TIMEOUT) -> ContainerRuntimes:
        return ContainerRuntimes(candidate_sockets(explicit), timeout,
                                 cri_sockets=candidate_cri_sockets(explicit))

    def ping(self) -> tuple[str, ...]:
        """The sockets whose runtime answers now (`/_ping`, else CRI `Version`)."""
        alive = []
        for path in dict.fromkeys((*self.sockets, *self.cri_sockets)):
            if path in self.sockets and EngineClient(path, self.timeout).ping():
                self._speaks[path] = DOCKER_API
            elif path in self.cri_sockets and self._cri_client(path).ping():
                self._speaks[path] = CRI_API
            else:
                continue
            alive.append(path)
        self.answered.update(alive)
        return tuple(alive)

    def lookup(self, ref: str, container_type: str = "docker") -> ContainerInfo | None:
        """The container `ref` from the first runtime that knows it, asked in the API of
        `container_type` (Docker's: an id, unique id prefix or name; CRI's: an id or unique id
        prefix); None when none does or none answers."""
        api = CRI_API if container_type in CRI_TYPES else DOCKER_API
        now = self.clock()
        cached = self._cache.get((api, ref))
        if cached is not None and (cached[0] is not None or now < cached[1]):
            return cached[0]
        info = None
        for path in self._sockets_for(api, container_type):
            if self._down_until.get((path, api), 0.0) > now:
                continue
            self.lookups += 1
            try:
                info = self._ask(api, path, ref)
            except EngineUnavailable:
                self._down_until[(path, api)] = self.clock() + SOCKET_BACKOFF
                continue
            self.answered.add(path)
            self._speaks[path] = api
            if info is not None:
                break
        self._cache[(api, ref)] = (info, now + MISS_RETRY)
        return info

    def close(self) -> None:
        """Close the CRI channels (the Docker client holds no connection between lookups)."""
        for client in self._cri.values():
            client.close()
        self._cri.clear()

    def _sockets_for(self, api: str, container_type: str) -> list[str]:
        """This API's sockets not known to speak the other, those named after the container's
        runtime first."""
        paths = self.cri_sockets if api == CRI_API else self.sockets
        hint = _PATH_HINT.get(container_type, "\0")
        return sorted((p for p in paths if self._speaks.get(p, api) == api),
                      key=lambda p: hint not in p)

    def _ask(self, api: str, path: str, ref: str) -> ContainerInfo | None:
        if api == CRI_API:
            return self._cri_client(path).status(ref)
        return EngineClient(path, self.timeout).inspect(ref)

    def _cri_client(self, path: str) -> CriClient:
        client = self._cri.get(path)
        if client is None:
            client = self._cri[path] = CriClient(path, self.timeout)
        return client


# ---- a stand-in engine --------------------------------------------------------------------------

@dataclass
class StandinServer:
    """A running `serve_engine_api`: its socket and the paths it was asked for."""

    socket_path: Path
    containers: Mapping[str, ContainerInfo]
    requests: list[str] = field(default_factory=list)


def inspect_document(container_id: str, info: ContainerInfo) -> dict[str, Any]:
    """The `GET /containers/{id}/json` answer for `info`, shaped like Docker Engine API 1.43's
    ContainerInspectResponse (the fields a client reads, with plausible values for the rest)."""
    created = "2024-01-01T00:00:00.000000000Z"
    return {
        "Id": container_id, "Created": created, "Path": "/bin/sh", "Args": [],
        "State": {"Status": "running", "Running": True, "Paused": False, "Restarting": False,
                  "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                  "StartedAt": created, "FinishedAt": "0001-01-01T00:00:00Z"},
        "Image": f"sha256:{info.image_id}" if info.image_id else "",
        "ResolvConfPath": f"/var/lib/docker/containers/{container_id}/resolv.conf",
        "HostnamePath": f"/var/lib/docker/containers/{container_id}/hostname",
        "HostsPath": f"/var/lib/docker/containers/{container_id}/hosts",
        "LogPath": "", "Name": "/" + info.name, "RestartCount": 0, "Driver": "overlay2",
        "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": {"Privileged": info.privileged, "NetworkMode": "bridge", "PidMode": "",
                       "IpcMode": "private", "Binds": None, "CpuShares": 0, "Memory": 0},
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "Mounts": [{"Type": "bind", "Source": m.source, "Destination": m.dest, "Mode": m.mode,
                    "RW": m.rw, "Propagation": m.propagation} for m in info.mounts],
        "Config": {"Hostname": container_id[:12], "Domainname": "", "User": "",
                   "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
                   "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": [],
                   "Cmd": ["/bin/sh"], "Image": info.image, "Volumes": None, "WorkingDir": "",
                   "Entrypoint": None, "OnBuild": None, "Labels": dict(info.labels)},
        "NetworkSettings": {"Bridge": "", "SandboxID": "", "Ports": {}, "IPAddress": "",
                            "Networks": {}},
    }


def image_document(info: ContainerInfo) -> dict[str, Any]:
    """The `GET /images/{id}/json` answer for the image of `info` (Id, RepoTags, RepoDigests)."""
    repository, tag, _ = split_image(info.image)
    repository = info.image_repository or repository
    tag = info.image_tag or tag or "latest"
    digests = [f"{repository}@{info.image_digest}"] if info.image_digest else []
    return {"Id": f"sha256:{info.image_id}", "RepoTags": [f"{repository}:{tag}"],
            "RepoDigests": digests, "Os": "linux", "Architecture": "amd64"}


class _Handler(BaseHTTPRequestHandler):
    server: _StandinUnixServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        state = self.server.state
        path = _API_PREFIX.sub("", urlsplit(self.path).path)
        state.requests.append(path)
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if path == "/_ping":
            self._send(200, b"OK", "text/plain; charset=utf-8")
        elif path == "/version":
            self._json(200, {"Version": "sysreplay-standin", "ApiVersion": STANDIN_API_VERSION,
                             "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64",
                             "KernelVersion": os.uname().release})
        elif len(parts) == 3 and parts[0] == "containers" and parts[2] == "json":
            self._container(state, parts[1])
        elif len(parts) == 3 and parts[0] == "images" and parts[2] == "json":
            self._image(state, parts[1])
        else:
            self._json(404, {"message": "page not found"})

    def _container(self, state: StandinServer, ref: str) -> None:
        matches = _find(state.containers, ref)
        if len(matches) == 1:
            cid = matches[0]
            self._json(200, inspect_document(cid, state.containers[cid]))
        elif matches:
            self._json(400, {"message": f"multiple IDs found with provided prefix: {ref}"})
        else:
            self._json(404, {"message": f"No such container: {ref}"})

    def _image(self, state: StandinServer, ref: str) -> None:
        ref = ref.removeprefix("sha256:")
        for info in state.containers.values():
            if info.image_id and info.image_id.startswith(ref):
                self._json(200, image_document(info))
                return
        self._json(404, {"message": f"No such image: {ref}"})

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Api-Version", STANDIN_API_VERSION)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a unix socket has no client address to log, and tests want quiet


def _find(containers: Mapping[str, ContainerInfo], ref: str) -> list[str]:
    """Container ids matching `ref` as Docker resolves it: full id, name, then unique prefix."""
    if ref in containers:
        return [ref]
    named = [cid for cid, info in containers.items() if info.name == ref.removeprefix("/")]
    if named:
        return named[:1]
    return [cid for cid in containers if ref and cid.startswith(ref)]


class _StandinUnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, state: StandinServer) -> None:
        self.state = state
        super().__init__(path, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("standin", 0)  # BaseHTTPRequestHandler expects a (host, port)


@contextlib.contextmanager
def serve_engine_api(socket_path: Path,
                     containers: Mapping[str, ContainerInfo]) -> Iterator[StandinServer]:
    """Serve a minimal Docker Engine API on `socket_path` from a thread while inside:
    `/_ping`, `/version`, `/containers/{id|name|unique prefix}/json` (404 `No such container`
    otherwise) and `/images/{id}/json`, with or without a `/v1.xx` prefix. `containers` maps
    full container ids to what the engine says about them."""
    socket_path = Path(socket_path)
    state = StandinServer(socket_path, dict(containers))
    server = _StandinUnixServer(str(socket_path), state)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="engine-standin",
                              daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
