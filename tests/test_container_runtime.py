"""Container metadata from the engine's API: the client against the stand-in engine on a real
unix socket (found, 404, garbage, silence, no socket), the parsing of real Docker and podman
inspect answers, the cache, the --container selection, the enrichment of rows, and a live
capture of a process in a Docker-style cgroup (require_bpf).
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from live_capture import record_while

from capture.bpf_render import SYSCALL_BY_NAME
from capture.cgroup_index import cgroup_mounts
from capture.container_filter import ContainerSelection, ContainerSelectionError
from capture.container_runtime import (
    LOOKUP_TIMEOUT,
    MISS_RETRY,
    ContainerInfo,
    ContainerRuntimes,
    EngineClient,
    Mount,
    candidate_sockets,
    image_document,
    inspect_document,
    parse_inspect,
    serve_engine_api,
    split_image,
    with_image_inspect,
)
from capture.enrich import Enricher
from capture.probe import REC_SYSCALL, Record
from capture.proc_table import Proc, UserDb
from capture.rows import RowBatch

CID = "4f66ad9a0b2e" + "0123456789abcdef" * 3 + "0123"
IMAGE_ID = "b2e5f7a1c3d4" + "fedcba9876543210" * 3 + "cdef"
DIGEST = "sha256:" + "9a" * 32
WEB = ContainerInfo(id=CID, name="web", image="nginx:1.25", image_id=IMAGE_ID,
                    image_digest=DIGEST, privileged=True,
                    labels=(("io.kubernetes.pod.name", "web-0"),
                            ("io.kubernetes.pod.namespace", "shop")),
                    mounts=(Mount("/srv/www", "/usr/share/nginx/html", "ro", False, "rprivate"),))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    with serve_engine_api(tmp_path / "docker.sock", {CID: WEB}) as server:
        yield server


# ---- parsing ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("image", "expected"), [
    ("nginx", ("nginx", "", "")),
    ("nginx:1.25", ("nginx", "1.25", "")),
    ("library/nginx:1.25-alpine", ("library/nginx", "1.25-alpine", "")),
    ("registry:5000/org/app:2.0", ("registry:5000/org/app", "2.0", "")),
    ("registry:5000/app", ("registry:5000/app", "", "")),
    ("docker.io/library/alpine@sha256:ab12", ("docker.io/library/alpine", "", "sha256:ab12")),
    ("quay.io/org/app:1@sha256:cd", ("quay.io/org/app", "1", "sha256:cd")),
])
def test_image_references_split_like_libsinsp(image: str, expected: tuple[str, str, str]) -> None:
    assert split_image(image) == expected


# A trimmed `docker inspect` answer (Docker Engine API 1.43), as the daemon writes it.
DOCKER_INSPECT = {
    "Id": CID, "Created": "2024-05-02T09:12:44.417391255Z", "Path": "/docker-entrypoint.sh",
    "Args": ["nginx", "-g", "daemon off;"],
    "State": {"Status": "running", "Running": True, "Pid": 4242},
    "Image": f"sha256:{IMAGE_ID}", "Name": "/web", "RestartCount": 0, "Driver": "overlay2",
    "HostConfig": {"Binds": ["/srv/www:/usr/share/nginx/html:ro"], "NetworkMode": "default",
                   "Privileged": False, "PidMode": ""},
    "Mounts": [{"Type": "bind", "Source": "/srv/www", "Destination": "/usr/share/nginx/html",
                "Mode": "ro", "RW": False, "Propagation": "rprivate"}],
    "Config": {"Hostname": CID[:12], "User": "", "Env": ["PATH=/usr/bin"],
               "Cmd": ["nginx", "-g", "daemon off;"], "Image": "nginx:1.25",
               "Labels": {"maintainer": "NGINX <docker-maint@nginx.com>"}},
    "NetworkSettings": {"IPAddress": "172.17.0.2", "Ports": {"80/tcp": None}},
}
# podman's Docker-compatible answer names the image (with '/') where Docker puts its id.
PODMAN_INSPECT = {
    "Id": CID, "Name": "db", "Image": "docker.io/library/postgres:16",
    "HostConfig": {"Privileged": True}, "Mounts": [],
    "Config": {"Image": "docker.io/library/postgres:16", "Labels": None},
}


def test_a_docker_inspect_answer_parses_into_falco_fields() -> None:
    info = parse_inspect(DOCKER_INSPECT)
    assert info == ContainerInfo(
        id=CID, name="web", image="nginx:1.25", image_id=IMAGE_ID, image_repository="nginx",
        image_tag="1.25", privileged=False,
        labels=(("maintainer", "NGINX <docker-maint@nginx.com>"),),
        mounts=(Mount("/srv/www", "/usr/share/nginx/html", "ro", False, "rprivate"),))
    assert info.short_id == CID[:12]
    assert info.mounts_text == "/srv/www:/usr/share/nginx/html:ro:false:rprivate"


def test_a_podman_inspect_answer_takes_the_image_name_from_image() -> None:
    info = parse_inspect(PODMAN_INSPECT)
    assert info is not None
    assert (info.name, info.image_id, info.image_repository, info.image_tag, info.privileged) \
        == ("db", "", "docker.io/library/postgres", "16", True)


@pytest.mark.parametrize("doc", [None, [], {}, {"Id": ""}, {"Id": 7}, "text"])
def test_what_is_not_an_inspect_answer_parses_to_none(doc: Any) -> None:
    assert parse_inspect(doc) is None


def test_image_inspect_completes_digest_and_tag() -> None:
    base = ContainerInfo(id=CID, name="x", image="nginx", image_id=IMAGE_ID,
                         image_repository="nginx")
    doc = {"RepoTags": ["nginx:latest", "nginx:1.25"],
           "RepoDigests": [f"nginx@{DIGEST}"]}
    done = with_image_inspect(base, doc)
    assert (done.image_repository, done.image_tag, done.image_digest) == \
        ("nginx", "latest", DIGEST)
    # started by image id: repository and tag come from the image alone
    by_id = with_image_inspect(ContainerInfo(id=CID, name="x", image=IMAGE_ID[:12],
                                             image_id=IMAGE_ID), doc)
    assert (by_id.image_repository, by_id.image_tag) == ("nginx", "latest")
    assert with_image_inspect(base, {"Digest": "sha256:pod"}).image_digest == "sha256:pod"


def test_the_standin_answers_in_the_engine_api_shape() -> None:
    doc = inspect_document(CID, WEB)
    # the top-level members of Docker's ContainerInspectResponse that clients read
    assert {"Id", "Created", "Path", "Args", "State", "Image", "Name", "RestartCount",
            "Driver", "Platform", "HostConfig", "GraphDriver", "Mounts", "Config",
            "NetworkSettings"} <= set(doc)
    assert doc["Name"] == "/web" and doc["Image"] == f"sha256:{IMAGE_ID}"
    assert doc["Config"]["Image"] == "nginx:1.25" and doc["HostConfig"]["Privileged"] is True
    assert doc["Mounts"][0] == {"Type": "bind", "Source": "/srv/www",
                                "Destination": "/usr/share/nginx/html", "Mode": "ro",
                                "RW": False, "Propagation": "rprivate"}
    assert image_document(WEB)["RepoTags"] == ["nginx:1.25"]
    assert image_document(WEB)["RepoDigests"] == [f"nginx@{DIGEST}"]


# ---- the client on a real socket ----------------------------------------------------------------

def test_the_client_finds_a_container_by_id_prefix_and_name(engine: Any) -> None:
    client = EngineClient(str(engine.socket_path))
    for ref in (CID, CID[:12], "web", "/web"):
        assert client.inspect(ref) == replace(WEB, image_repository="nginx", image_tag="1.25")
    assert client.ping()
    assert client.get("/v1.43/version")[1]["ApiVersion"] == "1.43"
    assert "/containers/web/json" in engine.requests


def test_an_unknown_container_is_a_404_not_an_error(engine: Any) -> None:
    client = EngineClient(str(engine.socket_path))
    status, doc = client.get(f"/containers/{'0' * 12}/json")
    assert status == 404 and doc == {"message": f"No such container: {'0' * 12}"}
    assert client.inspect("nope") is None


def test_an_ambiguous_prefix_finds_nothing(tmp_path: Path) -> None:
    other = CID[:11] + "f" * 53
    with serve_engine_api(tmp_path / "e.sock", {CID: WEB, other: WEB}) as server:
        assert EngineClient(str(server.socket_path)).inspect(CID[:11]) is None


@contextlib.contextmanager
def raw_server(path: Path, answer: bytes | None) -> Iterator[None]:
    """A unix socket that answers every connection with `answer`, or never (None)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    listener.settimeout(0.02)  # so that the thread sees `done` soon
    held: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(1)
            held.append(conn)
            if answer is not None:
                conn.recv(4096)
                conn.sendall(answer)
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(2)
        listener.close()
        for conn in held:
            conn.close()


@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH_9.2\r\n",  # not HTTP
    b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!",  # HTTP, not JSON
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]",  # JSON, not an inspect answer
    b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"[" * 100_000,  # too deep
], ids=["not-http", "not-json", "not-inspect", "deep-json"])
def test_garbage_gives_no_metadata_and_rests_the_socket(tmp_path: Path, answer: bytes) -> None:
    path = tmp_path / "garbage.sock"
    with raw_server(path, answer):
        runtimes = ContainerRuntimes((str(path),))
        assert runtimes.lookup(CID[:12]) is None
        assert runtimes.lookup("other") is None and runtimes.lookups == 1  # left alone now
        assert not runtimes.answered


def test_a_silent_socket_times_out_quickly(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    with raw_server(path, None):
        runtimes = ContainerRuntimes((str(path),))
        start = time.monotonic()
        assert runtimes.lookup(CID[:12]) is None
        assert time.monotonic() - start < LOOKUP_TIMEOUT * 5
        assert runtimes.ping() == ()


def test_an_absent_socket_gives_no_metadata(tmp_path: Path) -> None:
    runtimes = ContainerRuntimes((str(tmp_path / "absent.sock"),))
    assert runtimes.lookup(CID[:12]) is None and runtimes.ping() == ()


def test_lookups_are_cached_misses_retried_later(tmp_path: Path, engine: Any) -> None:
    now = [100.0]
    runtimes = ContainerRuntimes((str(tmp_path / "absent.sock"), str(engine.socket_path)),
                                 clock=lambda: now[0])
    assert runtimes.lookup(CID[:12]) is not None
    asked = len(engine.requests)
    assert runtimes.lookup(CID[:12]) is runtimes.lookup(CID[:12])
    assert len(engine.requests) == asked  # found: never asked again
    assert runtimes.lookup("0" * 12) is None
    asked = len(engine.requests)
    assert runtimes.lookup("0" * 12) is None and len(engine.requests) == asked
    now[0] += MISS_RETRY + 1
    assert runtimes.lookup("0" * 12) is None and len(engine.requests) == asked + 1
    assert runtimes.answered == {str(engine.socket_path)}


def test_sockets_come_from_docker_host_and_the_usual_paths(tmp_path: Path, engine: Any) -> None:
    sock = str(engine.socket_path)
    assert candidate_sockets((), {"DOCKER_HOST": f"unix://{sock}"})[0] == sock
    assert sock not in candidate_sockets((), {"DOCKER_HOST": "tcp://10.0.0.1:2375"})
    assert str(tmp_path / "gone.sock") not in candidate_sockets(
        (), {"DOCKER_HOST": f"unix://{tmp_path / 'gone.sock'}"})
    assert candidate_sockets(("/a", "/b", "/a")) == ("/a", "/b")  # given: kept as given


# ---- --container --------------------------------------------------------------------------------

def test_selection_by_id_name_and_host(engine: Any) -> None:
    runtimes = ContainerRuntimes((str(engine.socket_path),))
    in_web = Proc(10, container_id=CID[:12], container_type="docker")
    other = Proc(11, container_id="a" * 12, container_type="docker")
    host = Proc(12)
    by_name = ContainerSelection.parse(("web",), runtimes)
    assert (by_name.wants(in_web), by_name.wants(other), by_name.wants(host)) == \
        (True, False, False)
    by_id = ContainerSelection.parse((CID,), ContainerRuntimes(()))
    assert by_id.wants(in_web) and not by_id.wants(other)
    only_host = ContainerSelection.parse(("host", CID[:12]), ContainerRuntimes(()))
    assert only_host.wants(host) and only_host.wants(in_web)


def test_a_name_without_a_runtime_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContainerSelectionError, match=r"--container web: .*--runtime-socket"):
        ContainerSelection.parse(("web",), ContainerRuntimes((str(tmp_path / "no.sock"),)))


# ---- enrichment ---------------------------------------------------------------------------------

def fake_proc(root: Path, pid: int, comm: str, cgroup: str) -> None:
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    rest = ["S", "1", str(pid), str(pid), "0"] + ["0"] * 14 + ["100"] + ["0"] * 20
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest))
    (d / "cmdline").write_bytes(comm.encode() + b"\0")
    (d / "status").write_text(f"Name:\t{comm}\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n")
    (d / "cgroup").write_text(cgroup)
    (d / "environ").write_bytes(b"HOME=/root\0TERM=xterm\0")


def open_record(tgid: int) -> Record:
    """openat(AT_FDCWD, "/etc/hostname") = 3 by `cat`."""
    return Record(REC_SYSCALL, SYSCALL_BY_NAME["openat"].nr, 0, 0, 3,
                  (0xFFFFFF9C, 0, 0, 0, 0, 0), tgid, tgid, 0, 0, 0, "cat", (b"/etc/hostname\0",))


CONTAINER_COLUMNS = ["proc.pid", "container.id", "container.type", "container.name",
                     "container.image", "container.image.id", "container.image.repository",
                     "container.image.tag", "container.image.digest", "container.privileged",
                     "container.mounts", "k8s.ns.name", "k8s.pod.name", "proc.env"]


def test_rows_of_a_container_get_the_runtime_metadata(tmp_path: Path, engine: Any) -> None:
    proc_root = tmp_path / "proc"
    fake_proc(proc_root, 40, "nginx", f"4:pids:/docker/{CID}\n0::/\n")
    fake_proc(proc_root, 41, "bash", "0::/user.slice\n")
    runtimes = ContainerRuntimes((str(engine.socket_path),))
    en = Enricher(0, proc_root=proc_root, users=UserDb({0: "root"}, {0: "root"}),
                  runtimes=runtimes)
    en.snapshot()
    assert runtimes.lookups == 1  # the container running at start was looked up then
    batch = RowBatch()
    en.feed([open_record(40), open_record(41), open_record(40)], batch)
    rows = batch.to_table().select(CONTAINER_COLUMNS).to_pylist()
    assert rows[0] == {
        "proc.pid": 40, "container.id": CID[:12], "container.type": "docker",
        "container.name": "web", "container.image": "nginx:1.25",
        "container.image.id": IMAGE_ID, "container.image.repository": "nginx",
        "container.image.tag": "1.25", "container.image.digest": DIGEST,
        "container.privileged": True,
        "container.mounts": "/srv/www:/usr/share/nginx/html:ro:false:rprivate",
        "k8s.ns.name": "shop", "k8s.pod.name": "web-0", "proc.env": "HOME=/root TERM=xterm"}
    assert rows[1]["container.id"] == rows[1]["container.name"] == "host"
    assert rows[1]["container.image"] is None and rows[2] == rows[0]
    assert runtimes.lookups == 1
    assert en.meta_options()["container_runtime_sockets"] == [str(engine.socket_path)]


def test_a_container_the_runtime_does_not_know_keeps_its_id_only(tmp_path: Path) -> None:
    proc_root = tmp_path / "proc"
    fake_proc(proc_root, 40, "nginx", f"0::/system.slice/docker-{CID}.scope\n")
    en = Enricher(0, proc_root=proc_root, users=UserDb({}, {}),
                  runtimes=ContainerRuntimes((str(tmp_path / "none.sock"),)))
    en.snapshot()
    batch = RowBatch()
    en.feed([open_record(40)], batch)
    row = batch.to_table().select(CONTAINER_COLUMNS).to_pylist()[0]
    assert (row["container.id"], row["container.type"]) == (CID[:12], "docker")
    assert row["container.name"] is None and row["container.image"] is None


def test_a_selection_keeps_only_its_containers_rows(tmp_path: Path, engine: Any) -> None:
    proc_root = tmp_path / "proc"
    fake_proc(proc_root, 40, "nginx", f"4:pids:/docker/{CID}\n")
    fake_proc(proc_root, 41, "bash", "0::/\n")
    en = Enricher(0, proc_root=proc_root, users=UserDb({}, {}), containers=("web",),
                  runtimes=ContainerRuntimes((str(engine.socket_path),)))
    en.snapshot()
    assert set(en.fds.tables) == {40}  # left-out processes' fds are not even read
    batch = RowBatch()
    en.feed([open_record(41), open_record(40), open_record(41)], batch)
    rows = batch.to_table().select(["proc.pid", "container.name"]).to_pylist()
    assert rows == [{"proc.pid": 40, "container.name": "web"}]
    assert 41 not in en.fds.tables
    assert en.meta_options()["container_selection"] == "user space (after enrichment)"


# ---- live: a process in a Docker-style cgroup ---------------------------------------------------

V1_PIDS = Path("/sys/fs/cgroup/pids")


@contextlib.contextmanager
def docker_style_cgroup(root: Path) -> Iterator[tuple[str, Path]]:
    """A cgroup under `root` named the way Docker's cgroupfs driver names a container's."""
    cid = secrets.token_hex(32)
    path = root / "docker" / cid
    created_parent = not path.parent.exists()
    path.mkdir(parents=True)
    try:
        yield cid, path
    finally:
        for _ in range(50):  # the workload has exited; its exit may take a moment to land
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        if created_parent:
            with contextlib.suppress(OSError):
                path.parent.rmdir()


def in_cgroup(cgroup: Path, command: str) -> list[str]:
    """A shell that moves itself into `cgroup`, then execs `command`."""
    return ["sh", "-c", f"echo $$ > {cgroup}/cgroup.procs && exec {command}"]


def record_live(out: Path, sock: Path | tuple[Path, ...], workloads: list[list[str]],
                **kw: Any) -> None:
    from capture.record import RecordOptions

    socks = (sock,) if isinstance(sock, Path) else sock
    options = RecordOptions(flush_seconds=0.2, runtime_sockets=tuple(str(s) for s in socks),
                            **kw)

    def run() -> None:
        for argv in workloads:
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    record_while(options, out, run)


LIVE_COLUMNS = ["evt.type", "proc.name", "fd.name", "container.id", "container.name",
                "container.image", "container.image.repository", "container.image.tag"]


@pytest.mark.usefixtures("require_bpf")
def test_live_capture_names_docker_style_containers_and_selects_one(tmp_path: Path) -> None:
    """v1: a shell joins the container's cgroup (as a runtime's shim does), then runs a short
    `cat /etc/hostname` as its child: cat is gone before its execve is enriched, and its
    container comes from its parent's /proc. v2 (when there is a v2 hierarchy): a short
    command moved in by itself: the container comes from the record's cgroup id."""
    if not (V1_PIDS / "cgroup.procs").exists():
        pytest.skip("needs the cgroup-v1 pids hierarchy at /sys/fs/cgroup/pids")
    v2_root, _ = cgroup_mounts()
    with contextlib.ExitStack() as stack:
        cid, cgroup = stack.enter_context(docker_style_cgroup(V1_PIDS))
        containers = {cid: ContainerInfo(id=cid, name="sysreplay-v1", image="alpine:3.19",
                                         image_id=secrets.token_hex(32))}
        shim = ["sh", "-c", f"echo $$ > {cgroup}/cgroup.procs; cat /etc/hostname; sleep 1"]
        marker = tmp_path / "host-marker"
        marker.write_text("x")
        workloads = [shim, ["cat", str(marker)]]
        if v2_root is not None:
            cid2, cgroup2 = stack.enter_context(docker_style_cgroup(v2_root))
            containers[cid2] = ContainerInfo(id=cid2, name="sysreplay-v2", image="busybox")
            workloads.append(in_cgroup(cgroup2, "cat /etc/hostname"))
        server = stack.enter_context(serve_engine_api(tmp_path / "docker.sock", containers))
        everything, selected = tmp_path / "all.parquet", tmp_path / "selected.parquet"
        record_live(everything, server.socket_path, workloads)
        record_live(selected, server.socket_path, workloads, containers=("sysreplay-v1",))

    rows = pq.read_table(everything, columns=LIVE_COLUMNS).to_pylist()

    def hostname_reads(container_id: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["container.id"] == container_id
                and r["fd.name"] == "/etc/hostname" and r["evt.type"] == "openat"]

    v1 = [r for r in rows if r["container.id"] == cid[:12]]
    assert [r["proc.name"] for r in hostname_reads(cid[:12])] == ["cat"]
    assert {(r["container.name"], r["container.image"], r["container.image.repository"],
             r["container.image.tag"]) for r in v1} == \
        {("sysreplay-v1", "alpine:3.19", "alpine", "3.19")}
    on_host = [r for r in rows if r["fd.name"] == str(marker) and r["evt.type"] == "openat"]
    assert [(r["container.id"], r["container.name"]) for r in on_host] == [("host", "host")]
    if v2_root is not None:
        v2 = hostname_reads(cid2[:12])
        assert [(r["proc.name"], r["container.name"], r["container.image.tag"])
                for r in v2] == [("cat", "sysreplay-v2", "latest")]

    kept = pq.read_table(selected, columns=LIVE_COLUMNS).to_pylist()
    assert kept and {r["container.id"] for r in kept} == {cid[:12]}
    assert any(r["fd.name"] == "/etc/hostname" for r in kept)
    options = (pq.read_metadata(selected).metadata or {})[b"sysreplay.options"].decode()
    assert '"containers": ["sysreplay-v1"]' in options
    assert f'"container_runtime_sockets": ["{tmp_path / "docker.sock"}"]' in options
