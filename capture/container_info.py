"""What a container runtime says about a container, whichever API said it.

`ContainerInfo` (and `Mount`) hold what Falco's `container.*` and `k8s.*` fields need; the
Docker Engine API client (capture/container_runtime.py) and the CRI client
(capture/cri_runtime.py) both fill it. `split_image` splits an image reference as libsinsp does,
and `EngineUnavailable` is what either client raises when a socket cannot be asked.
"""

from __future__ import annotations

from dataclasses import dataclass

LOOKUP_TIMEOUT = 0.1  # seconds per socket operation: a lookup runs inside the capture loop
MAX_BODY = 8 << 20  # an answer is a few KiB; more is not an engine we understand


class EngineUnavailable(Exception):
    """The socket could not be asked (absent, refused, timed out) or did not speak the API."""


@dataclass(frozen=True)
class Mount:
    """One mount; `str()` is Falco's `source:dest:mode:rdrw:propagation`."""

    source: str
    dest: str
    mode: str = ""
    rw: bool = True
    propagation: str = ""

    def __str__(self) -> str:
        rw = "true" if self.rw else "false"
        return f"{self.source}:{self.dest}:{self.mode}:{rw}:{self.propagation}"


@dataclass(frozen=True)
class ContainerInfo:
    """What the engine says about one container (the fields Falco's container.* need)."""

    id: str  # the full id, as the engine reports it
    name: str
    image: str  # the name the container was started from
    image_id: str = ""  # the image's sha256, without "sha256:"
    image_repository: str = ""
    image_tag: str = ""
    image_digest: str = ""
    privileged: bool = False
    labels: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs
    mounts: tuple[Mount, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def mounts_text(self) -> str:
        """`container.mounts`: the mounts comma-joined, as the container plugin writes them."""
        return ",".join(str(m) for m in self.mounts)

    def label(self, key: str) -> str | None:
        return next((v for k, v in self.labels if k == key), None)


def split_image(image: str) -> tuple[str, str, str]:
    """(repository, tag, digest) of an image reference, split like libsinsp's
    `split_container_image(..., split_repo=false)`: `registry:5000/org/app:1.2@sha256:ab` ->
    ("registry:5000/org/app", "1.2", "sha256:ab")."""
    prefix, slash, rest = image.partition("/")
    if not slash:
        prefix, rest = "", image
    else:
        prefix += "/"
    named, at, digest = rest.partition("@")
    name, _, tag = named.partition(":")
    return prefix + name, tag, digest if at else ""
