"""Container metadata from containerd and CRI-O over the CRI: the reading of their answers (image
names as libsinsp splits them, privileged where each runtime puts it), the client against the
stand-in CRI server on a real unix socket (found, unknown, pod sandbox, older API version,
garbage, silence, no socket, a Docker socket), the choice of sockets by container type, the
enrichment of rows, and a live capture of processes in containerd- and CRI-O-style cgroups
(require_bpf).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_container_runtime import (
    CONTAINER_COLUMNS,
    V1_PIDS,
    fake_proc,
    in_cgroup,
    open_record,
    raw_server,
    record_live,
)

from capture.cgroup_index import cgroup_mounts
from capture.container_filter import ContainerSelection
from capture.container_runtime import (
    LOOKUP_TIMEOUT,
    ContainerInfo,
    ContainerRuntimes,
    Mount,
    candidate_cri_sockets,
    serve_engine_api,
)
from capture.cri_runtime import (
    CriClient,
    EngineUnavailable,
    cri_image,
    info_document,
    info_privileged,
    load_grpc,
    parse_container_status,
    parse_image_id,
    parse_pod_sandbox_status,
    read_container_status,
)
from capture.cri_standin import (
    container_status_response,
    list_images_response,
    pod_sandbox_status_response,
    serve_cri_api,
)
from capture.enrich import Enricher
from capture.proc_table import Proc, UserDb, container_of
from capture.protobuf_wire import WireError, message_field, string_field
from capture.rows import RowBatch

CID = "3c5e1f0a9b7d" + "00112233445566778899aabbccddeeff"[:20] + "0123456789abcdef" * 2
SANDBOX = "9f8e7d6c5b4a" + "ffeeddccbbaa99887766554433221100"[:20] + "fedcba9876543210" * 2
IMAGE_ID = "5d41402abc4b" + "2a76b9719d911017c592"[:20] + "0a1b2c3d4e5f6a7b" * 2
DIGEST = "sha256:" + "c0ffee" * 10 + "abcd"
POD_UID = "6f1d2a4e-0c3b-4e5f-9a8b-7c6d5e4f3a2b"
API = ContainerInfo(
    id=CID, name="api", image="registry.example:5000/shop/api:2.1", image_id=IMAGE_ID,
    image_digest=DIGEST, privileged=True,
    labels=(("io.kubernetes.container.name", "api"), ("io.kubernetes.pod.name", "api-7d9f"),
            ("io.kubernetes.pod.namespace", "shop"), ("io.kubernetes.pod.uid", POD_UID)),
    mounts=(Mount(f"/var/lib/kubelet/pods/{POD_UID}/volumes/token",
                  "/var/run/secrets/kubernetes.io/serviceaccount", "", False, "private"),
            Mount("/run/containerd/containerd.sock", "/run/containerd/containerd.sock", "",
                  True, "rslave")))
# what the client reads back: the repository and tag split out of the image
API_READ = replace(API, image_repository="registry.example:5000/shop/api", image_tag="2.1")
POD = ContainerInfo(id=SANDBOX, name="api-7d9f", image="",
                    labels=(("app", "api"), ("io.kubernetes.pod.namespace", "shop"),
                            ("io.kubernetes.pod.uid", POD_UID)))
POD_READ = replace(POD, labels=(("app", "api"), ("io.kubernetes.pod.name", "api-7d9f"),
                                ("io.kubernetes.pod.namespace", "shop"),
                                ("io.kubernetes.pod.uid", POD_UID)))


@pytest.fixture(params=["containerd", "cri-o"])
def cri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with serve_cri_api(tmp_path / "cri.sock", {CID: API}, {SANDBOX: POD},
                       runtime=request.param) as server:
        yield server


# ---- reading the answers ------------------------------------------------------------------------

CONTAINERD_SPEC = {"runtimeSpec": {"annotations": {
    "io.kubernetes.cri.image-name": "quay.io/org/app:3"}}}
CRIO_SPEC = {"runtimeSpec": {"annotations": {"io.kubernetes.cri-o.ImageName": "app:7"}}}


@pytest.mark.parametrize(("image", "image_ref", "doc", "expected"), [
    # containerd: image is a repo tag, image_ref a repo digest
    ("docker.io/library/nginx:1.25", "docker.io/library/nginx@sha256:ab", {},
     ("docker.io/library/nginx:1.25", "docker.io/library/nginx", "1.25", "sha256:ab")),
    # a bare digest as image_ref
    ("nginx:1.25", "sha256:ab", {}, ("nginx:1.25", "nginx", "1.25", "sha256:ab")),
    ("registry:5000/app", "", {}, ("registry:5000/app", "registry:5000/app", "", "")),
    # the image named by id only: its name from the spec's annotations
    ("sha256:1d2e", "sha256:1d2e", CONTAINERD_SPEC,
     ("quay.io/org/app:3", "quay.io/org/app", "3", "sha256:1d2e")),
    ("", "", CRIO_SPEC, ("app:7", "app", "7", "")),
    # a digest ref and an id: no tag is made of the id
    ("sha256:1d2e", "quay.io/org/app@sha256:dd", {},
     ("quay.io/org/app", "quay.io/org/app", "", "sha256:dd")),
], ids=["repo-tag-and-digest", "bare-digest", "registry-port", "containerd-annotation",
        "crio-annotation", "digest-and-id"])
def test_images_read_like_libsinsp(image: str, image_ref: str, doc: dict[str, Any],
                                   expected: tuple[str, str, str, str]) -> None:
    assert cri_image(image, image_ref, doc) == expected


def test_an_info_that_is_not_a_json_object_reads_as_empty() -> None:
    assert info_document({"info": "[" * 100_000}) == {}  # deeper than the parser's stack
    assert info_document({"info": "not json"}) == info_document({"info": "[1]"}) == {}
    assert info_document({}) == {} and info_document({"info": '{"pid": 1}'}) == {"pid": 1}


def test_privileged_is_read_where_each_runtime_puts_it() -> None:
    assert info_privileged({"config": {"linux": {"security_context": {"privileged": True}}}})
    assert info_privileged({"privileged": True})  # CRI-O
    assert info_privileged({"runtimeSpec": {"linux": {"security_context": {
        "privileged": True}}}, "privileged": False})  # old containerd first
    assert not info_privileged({"privileged": "yes"}) and not info_privileged({})


@pytest.mark.parametrize("runtime", ["containerd", "cri-o"])
def test_a_status_answer_reads_into_falco_fields(runtime: str) -> None:
    info = parse_container_status(container_status_response(CID, API, runtime))
    # containerd's verbose info names the image id; CRI-O's does not (ListImages does)
    assert info == (API_READ if runtime == "containerd" else replace(API_READ, image_id=""))
    assert info is not None and info.mounts_text.split(",")[1] == \
        "/run/containerd/containerd.sock:/run/containerd/containerd.sock::true:rslave"


def test_the_status_image_id_field_comes_first() -> None:
    status = (string_field(1, CID) + message_field(2, string_field(1, "x"))
              + string_field(17, "sha256:" + "e" * 64))
    info, image_ref = read_container_status(message_field(1, status))
    assert info is not None and info.image_id == "e" * 64 and image_ref == ""


def test_a_sandbox_answer_names_the_pod() -> None:
    assert parse_pod_sandbox_status(pod_sandbox_status_response(SANDBOX, POD)) == POD_READ


def test_answers_without_a_status_or_an_id_are_none() -> None:
    assert parse_container_status(b"") is None
    assert parse_container_status(message_field(1, b"")) is None
    assert parse_pod_sandbox_status(message_field(1, string_field(2, "x"))) is None
    assert parse_image_id(list_images_response([API, API])) == ""  # ambiguous: none
    with pytest.raises(WireError):
        parse_container_status(b"\x0a\x10short")


# ---- the client on a real socket ----------------------------------------------------------------

def test_the_client_finds_a_container_by_id_and_prefix(cri: Any) -> None:
    client = CriClient(str(cri.socket_path))
    try:
        assert client.ping()
        for ref in (CID, CID[:12]):
            assert client.status(ref) == API_READ
    finally:
        client.close()
    methods = [m for m, _ in cri.requests]
    assert methods[:2] == ["Version", "ContainerStatus"] and "PodSandboxStatus" not in methods
    # CRI-O's answer has no image id: it comes from ListImages, by the image ref
    listed = [ref for m, ref in cri.requests if m == "ListImages"]
    assert listed == ([] if cri.runtime == "containerd"
                      else [f"registry.example:5000/shop/api@{DIGEST}"] * 2)


def test_a_pod_sandbox_id_falls_back_to_the_sandbox_status(cri: Any) -> None:
    client = CriClient(str(cri.socket_path))
    assert client.status(SANDBOX[:12]) == POD_READ
    assert client.status("0" * 12) is None  # neither: no metadata, not an error
    client.close()
    assert cri.requests[-2:] == [("ContainerStatus", "0" * 12), ("PodSandboxStatus", "0" * 12)]


def test_a_runtime_of_the_older_api_version_is_asked_in_it(tmp_path: Path) -> None:
    with serve_cri_api(tmp_path / "old.sock", {CID: API},
                       api_versions=("runtime.v1alpha2",)) as server:
        client = CriClient(str(server.socket_path))
        assert client.status(CID[:12]) == API_READ
        assert client.api_version == "runtime.v1alpha2"  # kept for the next calls
        client.close()


@contextlib.contextmanager
def garbage_grpc_server(path: Path) -> Iterator[None]:
    """A gRPC server answering every CRI call with bytes that are not a message."""
    grpc = load_grpc()

    def garbage(request: bytes, context: Any) -> bytes:
        return b"\x0a\xff\xff\xff\xff\x0f"  # a length far past the end

    handler = grpc.unary_unary_rpc_method_handler(garbage)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "runtime.v1.RuntimeService", {"ContainerStatus": handler, "Version": handler})])
    server.add_insecure_port(f"unix:{path}")
    server.start()
    try:
        yield
    finally:
        server.stop(None).wait(5)


def test_a_garbage_answer_gives_no_metadata_and_rests_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sock"
    with garbage_grpc_server(path):
        with pytest.raises(EngineUnavailable, match="not a CRI answer"):
            CriClient(str(path)).status(CID)
        runtimes = ContainerRuntimes(cri_sockets=(str(path),))
        assert runtimes.lookup(CID[:12], "containerd") is None
        assert runtimes.lookup(SANDBOX[:12], "containerd") is None
        assert runtimes.lookups == 1 and not runtimes.answered  # left alone after the first
        runtimes.close()


@pytest.mark.parametrize("answer", [b"SSH-2.0-OpenSSH_9.2\r\n", None],
                         ids=["not-http2", "silent"])
def test_a_socket_that_is_not_a_cri_server_fails_quickly(tmp_path: Path,
                                                         answer: bytes | None) -> None:
    path = tmp_path / "other.sock"
    with raw_server(path, answer):
        runtimes = ContainerRuntimes(cri_sockets=(str(path),))
        start = time.monotonic()
        assert runtimes.lookup(CID[:12], "cri-o") is None
        assert time.monotonic() - start < LOOKUP_TIMEOUT * 5
        assert runtimes.ping() == () and not runtimes.answered
        runtimes.close()


def test_an_absent_socket_gives_no_metadata(tmp_path: Path) -> None:
    runtimes = ContainerRuntimes(cri_sockets=(str(tmp_path / "absent.sock"),))
    assert runtimes.lookup(CID[:12], "containerd") is None and runtimes.ping() == ()
    runtimes.close()


# ---- which socket is asked ----------------------------------------------------------------------

DOCKER_CID = "4f66ad9a0b2e" + "0123456789abcdef" * 3 + "0123"
WEB = ContainerInfo(id=DOCKER_CID, name="web", image="nginx:1.25")


def test_each_container_type_is_asked_in_its_runtimes_api(tmp_path: Path) -> None:
    """Given sockets (--runtime-socket) are tried in both APIs until each has answered in one;
    a container is then asked only where its type's API is spoken."""
    with serve_engine_api(tmp_path / "docker.sock", {DOCKER_CID: WEB}) as docker, \
            serve_cri_api(tmp_path / "containerd.sock", {CID: API}) as cri:
        given = (str(docker.socket_path), str(cri.socket_path))
        runtimes = ContainerRuntimes.detect(given)
        assert runtimes.sockets == runtimes.cri_sockets == given
        assert runtimes.ping() == given
        assert runtimes.lookup(CID[:12], "containerd") == API_READ
        assert runtimes.lookup(DOCKER_CID[:12], "docker") == \
            replace(WEB, image_repository="nginx", image_tag="1.25")
        assert runtimes.lookup("web") is not None  # a name: Docker's API only
        assert runtimes.lookups == 3  # each asked once, of the socket that speaks its API
        assert runtimes.lookup(CID[:12], "containerd") is not None and runtimes.lookups == 3
        assert ("ContainerStatus", CID[:12]) in cri.requests
        assert not [r for r in docker.requests if CID[:12] in r]
        asked = len(cri.requests)
        assert runtimes.lookup(CID[:12], "docker") is None  # Docker's API: the CRI not asked
        assert len(cri.requests) == asked and runtimes.lookups == 4
        runtimes.close()


def test_a_cri_o_container_asks_cri_os_socket_first(tmp_path: Path) -> None:
    with serve_cri_api(tmp_path / "containerd.sock", {}) as containerd, \
            serve_cri_api(tmp_path / "crio.sock", {CID: API}, runtime="cri-o") as crio:
        runtimes = ContainerRuntimes(cri_sockets=(str(containerd.socket_path),
                                                  str(crio.socket_path)))
        assert runtimes.lookup(CID[:12], "cri-o") is not None
        assert not containerd.requests and runtimes.lookups == 1
        runtimes.close()


def test_cri_sockets_come_from_the_endpoint_variable_and_the_usual_paths(tmp_path: Path) -> None:
    sock = tmp_path / "k.sock"
    sock.touch()
    env = {"CONTAINER_RUNTIME_ENDPOINT": f"unix://{sock}"}
    assert candidate_cri_sockets((), env)[0] == str(sock)
    assert str(sock) not in candidate_cri_sockets((), {"CONTAINER_RUNTIME_ENDPOINT": str(sock)})
    assert candidate_cri_sockets(("/a", "/a", "/b")) == ("/a", "/b")
    found = candidate_cri_sockets((), {})
    assert all(Path(p).exists() for p in found)


# ---- enrichment ---------------------------------------------------------------------------------

CONTAINERD_CGROUP = ("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
                     f"{POD_UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope\n")


def test_cgroup_forms_name_the_cri_runtimes() -> None:
    assert container_of(CONTAINERD_CGROUP) == (CID[:12], "containerd")
    assert container_of(f"4:pids:/kubepods/besteffort/pod{POD_UID}/{CID}\n") == \
        (CID[:12], "containerd")
    assert container_of(f"0::/kubepods.slice/crio-{CID}.scope\n") == (CID[:12], "cri-o")


def test_rows_of_a_containerd_container_get_the_runtime_metadata(tmp_path: Path,
                                                                 cri: Any) -> None:
    proc_root = tmp_path / "proc"
    fake_proc(proc_root, 50, "api", CONTAINERD_CGROUP)
    fake_proc(proc_root, 51, "pause",
              CONTAINERD_CGROUP.replace(f"cri-containerd-{CID}", f"cri-containerd-{SANDBOX}"))
    runtimes = ContainerRuntimes(cri_sockets=(str(cri.socket_path),))
    en = Enricher(0, proc_root=proc_root, users=UserDb({0: "root"}, {0: "root"}),
                  runtimes=runtimes)
    en.snapshot()
    assert runtimes.lookups == 2  # both containers running at start looked up then
    batch = RowBatch()
    en.feed([open_record(50), open_record(51), open_record(50)], batch)
    rows = batch.to_table().select(CONTAINER_COLUMNS).to_pylist()
    assert rows[0] == {
        "proc.pid": 50, "container.id": CID[:12], "container.type": "containerd",
        "container.name": "api", "container.image": "registry.example:5000/shop/api:2.1",
        "container.image.id": IMAGE_ID,
        "container.image.repository": "registry.example:5000/shop/api",
        "container.image.tag": "2.1", "container.image.digest": DIGEST,
        "container.privileged": True, "container.mounts": API.mounts_text,
        "k8s.ns.name": "shop", "k8s.pod.name": "api-7d9f", "proc.env": "HOME=/root TERM=xterm"}
    assert (rows[1]["container.id"], rows[1]["container.name"], rows[1]["k8s.pod.name"],
            rows[1]["k8s.ns.name"]) == (SANDBOX[:12], "api-7d9f", "api-7d9f", "shop")
    assert rows[2] == rows[0] and runtimes.lookups == 2
    assert en.meta_options()["container_runtime_sockets"] == [str(cri.socket_path)]
    runtimes.close()


def test_a_cri_container_is_selected_by_name(tmp_path: Path, cri: Any) -> None:
    proc_root = tmp_path / "proc"
    fake_proc(proc_root, 50, "api", CONTAINERD_CGROUP)
    fake_proc(proc_root, 52, "bash", "0::/user.slice\n")
    runtimes = ContainerRuntimes(cri_sockets=(str(cri.socket_path),))
    selection = ContainerSelection.parse(("api",), runtimes)  # the CRI socket answers Version
    assert selection.wants(Proc(50, container_id=CID[:12], container_type="containerd"))
    assert not selection.wants(Proc(53, container_id=SANDBOX[:12], container_type="containerd"))
    en = Enricher(0, proc_root=proc_root, users=UserDb({}, {}), containers=("api",),
                  runtimes=runtimes)
    en.snapshot()
    batch = RowBatch()
    en.feed([open_record(52), open_record(50)], batch)
    assert batch.to_table().select(["proc.pid", "container.name"]).to_pylist() == \
        [{"proc.pid": 50, "container.name": "api"}]
    runtimes.close()


# ---- live: processes in containerd- and CRI-O-style cgroups ------------------------------------

@contextlib.contextmanager
def cgroup_at(root: Path, relative: str) -> Iterator[Path]:
    """The cgroup `root/relative`, made with its missing parents and removed after."""
    path = root / relative
    made = [p for p in [path, *path.parents] if p.is_relative_to(root) and p != root
            and not p.exists()]
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        for directory in made:  # deepest first
            for _ in range(50):  # the workload has exited; its exit may take a moment to land
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


LIVE_COLUMNS = ["evt.type", "proc.name", "fd.name", "container.id", "container.type",
                "container.name", "container.image", "container.image.repository",
                "container.image.tag", "k8s.ns.name", "k8s.pod.name"]


@pytest.mark.usefixtures("require_bpf")
def test_live_capture_names_cri_containers_and_selects_them(tmp_path: Path) -> None:
    """v1: a shell joins a containerd pod container's cgroup (cgroupfs driver layout), then
    runs `cat /etc/hostname` as its child, named from its parent's /proc. v2 (when there is a
    v2 hierarchy): a command in a CRI-O scope (systemd driver layout), named from the record's
    cgroup id. Each runtime is a stand-in on its own socket; both containers are selected by
    name, so the host's events are left out."""
    if not (V1_PIDS / "cgroup.procs").exists():
        pytest.skip("needs the cgroup-v1 pids hierarchy at /sys/fs/cgroup/pids")
    v2_root, _ = cgroup_mounts()
    pod = uuid.uuid4()
    cid, cid2 = secrets.token_hex(32), secrets.token_hex(32)
    web = replace(API, id=cid, name="sysreplay-cri-v1")
    db = ContainerInfo(id=cid2, name="sysreplay-crio-v2", image="quay.io/org/db:16",
                       labels=(("io.kubernetes.pod.name", "db-0"),
                               ("io.kubernetes.pod.namespace", "data")))
    with contextlib.ExitStack() as stack:
        cgroup = stack.enter_context(cgroup_at(V1_PIDS, f"kubepods/besteffort/pod{pod}/{cid}"))
        marker = tmp_path / "host-marker"
        marker.write_text("x")
        workloads = [["sh", "-c", f"echo $$ > {cgroup}/cgroup.procs; cat /etc/hostname; "
                      "sleep 1"], ["cat", str(marker)]]
        if v2_root is not None:
            cgroup2 = stack.enter_context(cgroup_at(
                v2_root, f"sysreplay-kubepods.slice/crio-{cid2}.scope"))
            workloads.append(in_cgroup(cgroup2, "cat /etc/hostname"))
        containerd = stack.enter_context(serve_cri_api(tmp_path / "containerd.sock",
                                                       {cid: web}))
        crio = stack.enter_context(serve_cri_api(tmp_path / "crio.sock", {cid2: db},
                                                 runtime="cri-o"))
        out = tmp_path / "cri.parquet"
        record_live(out, (containerd.socket_path, crio.socket_path), workloads,
                    containers=("sysreplay-cri-v1", "sysreplay-crio-v2"))

    rows = pq.read_table(out, columns=LIVE_COLUMNS).to_pylist()
    assert rows and not [r for r in rows if r["container.id"] == "host"]
    assert not [r for r in rows if r["fd.name"] == str(marker)]
    v1 = [r for r in rows if r["container.id"] == cid[:12]]
    assert [r["proc.name"] for r in v1 if r["fd.name"] == "/etc/hostname"
            and r["evt.type"] == "openat"] == ["cat"]
    assert {(r["container.type"], r["container.name"], r["container.image"],
             r["container.image.repository"], r["container.image.tag"], r["k8s.ns.name"],
             r["k8s.pod.name"]) for r in v1} == \
        {("containerd", "sysreplay-cri-v1", "registry.example:5000/shop/api:2.1",
          "registry.example:5000/shop/api", "2.1", "shop", "api-7d9f")}
    if v2_root is not None:
        v2 = [r for r in rows if r["container.id"] == cid2[:12]
              and r["fd.name"] == "/etc/hostname" and r["evt.type"] == "openat"]
        assert [(r["proc.name"], r["container.type"], r["container.name"],
                 r["container.image"], r["k8s.pod.name"]) for r in v2] == \
            [("cat", "cri-o", "sysreplay-crio-v2", "quay.io/org/db:16", "db-0")]
    options = json.loads((pq.read_metadata(out).metadata or {})[b"sysreplay.options"])
    assert set(options["container_runtime_sockets"]) == \
        {str(tmp_path / "containerd.sock"), str(tmp_path / "crio.sock")}
