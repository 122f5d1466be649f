"""Loopback TCP listeners the scenarios talk to, by role (`Scenario.listeners`).

- `http`: answers one HTTP request with `200 ok` (the benign workload's GET);
- `shell`: reads what a reverse shell sends until it hangs up (the netcat scenario);
- `k8s-api`: on 6443 (8443 when taken), closes each connection at once (a Kubernetes API port).

They are bound before the scenarios' root processes fork (so the roots know the ports) and
served from threads once the roots exist. They live in the runner, the capture's own process,
which the capture never records.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Sequence

from capture.scenarios import Scenario
from schemas.trace import TraceError

K8S_API_PORTS = (6443, 8443)  # the first free one is used


class ListenerError(TraceError):
    """No free port for a listener."""


class Listeners:
    """Loopback TCP listeners by role, bound before the roots fork, served once started."""

    def __init__(self, roles: Sequence[str]) -> None:
        self.servers: dict[str, socket.socket] = {}
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        for role in roles:
            self.servers[role] = _bind(K8S_API_PORTS if role == "k8s-api" else (0,))

    @property
    def ports(self) -> dict[str, int]:
        return {role: s.getsockname()[1] for role, s in self.servers.items()}

    def start(self) -> None:
        for role, server in self.servers.items():
            thread = threading.Thread(target=self._serve, args=(server, role),
                                      name=f"listener-{role}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, server: socket.socket, role: str) -> None:
        server.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                _answer(conn, role)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        for server in self.servers.values():
            server.close()


HTTP_REPLY = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"


def _answer(conn: socket.socket, role: str) -> None:
    """http: read the request (up to its blank line), answer 200; shell: read until the client
    hangs up (or a second of silence); k8s-api: nothing (the caller closes at once)."""
    conn.settimeout(1.0)
    if role == "k8s-api":
        return
    data = b""
    while role != "http" or b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    if role == "http":
        conn.sendall(HTTP_REPLY)


def _bind(ports: Sequence[int]) -> socket.socket:
    for port in ports:
        try:
            return socket.create_server(("127.0.0.1", port))
        except OSError:
            continue
    raise ListenerError(f"No free loopback port among {', '.join(map(str, ports))} for the "
                        "Kubernetes API listener.")


@contextlib.contextmanager
def listeners_for(scenarios: Sequence[Scenario]) -> Iterator[Listeners]:
    roles = list(dict.fromkeys(r for s in scenarios for r in s.listeners))
    listeners = Listeners(roles)
    try:
        yield listeners
    finally:
        listeners.close()
