#!/usr/bin/env bash
# Prepare a Debian 12 machine for sysreplay, from nothing, as root:
#   1. system packages: BCC (library, Python bindings, tools), sysdig (the reference), venv/pip,
#      chromium (headless, for the HTML report test);
#   2. kernel headers BCC can compile against, linked under /lib/modules/$(uname -r);
#   3. tracefs mounted at /sys/kernel/tracing;
#   4. the project venv (.venv, Debian's python3 with system site-packages so `import bcc` works)
#      with `pip install -e '.[dev]'`;
#   5. when it changed the system: scripts/check-bpf.sh (a tracepoint program compiles and runs).
# Idempotent: every step checks before it acts, and the pip step keeps a stamp, so a re-run on a
# prepared machine takes about a second and never calls apt or pip.
#
# Environment: SYSREPLAY_VENV (default: <repo>/.venv).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SYSREPLAY_VENV:-$ROOT/.venv}
PYTHON=/usr/bin/python3  # Debian's: python3-bpfcc installs `bcc` for this interpreter only
STAMP=$VENV/.sysreplay-setup-stamp

# chromium: tests/test_report_html.py renders the `analyze run --html` page in it, headless.
# openssh-client, curl, iproute2, util-linux (unshare): what `capture scenario` runs.
# gcc: bench/bench_capture.py compiles its C syscall load (bench/capture/load.c).
# containerd, docker.io, podman, busybox-static: tests/test_cri_containerd.py,
# test_docker_engine.py and test_podman_service.py run real containers in a containerd, a
# dockerd and a podman service of their own (their sockets and directories; the packages start
# no daemon without systemd) from images made of busybox.
APT_PACKAGES=(python3-venv python3-pip python3-bpfcc bpfcc-tools libbpfcc sysdig chromium
              openssh-client curl iproute2 util-linux gcc containerd docker.io podman
              busybox-static)

log() { printf 'setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

APT_UPDATED=0
CHANGED=0  # set when the system was changed: then BPF is checked at the end
apt_update_once() {
    if [[ $APT_UPDATED == 0 ]]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
}

apt_install() {
    apt_update_once
    log "apt-get install $*"
    CHANGED=1
    # No recommends: sysdig recommends a DKMS kernel driver we neither need nor could build for
    # every kernel.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confold "$@" >/dev/null
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
    fi
}

# The newest linux-headers-<version>-cloud-amd64 (not the meta-package) that apt offers.
newest_cloud_headers() {
    apt-cache search --names-only '^linux-headers-[0-9].*-cloud-amd64$' \
        | awk '{print $1}' \
        | grep -E '^linux-headers-[0-9]+\.[0-9]+\.[0-9]+[^ ]*-cloud-amd64$' \
        | sort -V | tail -n 1 || true
}

# The newest of those already installed (empty if none): re-runs need no apt.
installed_cloud_headers() {
    dpkg-query -W -f='${Package} ${Status}\n' 'linux-headers-*-cloud-amd64' 2>/dev/null \
        | awk '$NF == "installed" {print $1}' \
        | grep -E '^linux-headers-[0-9]+\.[0-9]+\.[0-9]+[^ ]*-cloud-amd64$' \
        | sort -V | tail -n 1 || true
}

# Make /lib/modules/$(uname -r)/{build,source} point at headers BCC can compile against. A Debian
# kernel has its own headers package; other kernels (this project's machines run 6.18, which Debian
# does not ship) get the nearest Debian cloud headers: tracepoint programs only need the generic
# kernel headers, and BCC reads the layout of raw syscall events from tracefs, not from them.
install_headers() {
    local release modules pkg hdr_release
    release=$(uname -r)
    modules=/lib/modules/$release
    if [[ -e $modules/build/include ]]; then
        return
    fi
    pkg=$(installed_cloud_headers)
    if [[ -z $pkg ]]; then
        apt_update_once
        if apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
            apt_install "linux-headers-$release"
            return
        fi
        pkg=$(newest_cloud_headers)
    fi
    [[ -n $pkg ]] || die "no linux-headers-*-cloud-amd64 package offered by apt"
    if ! is_installed "$pkg"; then
        remove_dkms_driver
        # The headers need their kernel image, which needs an initramfs tool: tiny-initramfs is
        # the one that does not pull in udev and a systemd upgrade.
        apt_install tiny-initramfs "$pkg"
    fi
    hdr_release=${pkg#linux-headers-}
    mkdir -p "$modules"
    link_if_missing "$modules/build" "$(readlink -f "/lib/modules/$hdr_release/build")"
    link_if_missing "$modules/source" "$(readlink -f "/lib/modules/$hdr_release/source")"
    log "kernel $release: using headers of $hdr_release"
}

link_if_missing() {
    local link=$1 target=$2
    [[ -d $target ]] || die "headers directory $target does not exist"
    if [[ ! -e $link ]]; then
        ln -sfn "$target" "$link"
        CHANGED=1
        log "linked $link -> $target"
    fi
}

# sysdig recommends its kernel-module driver (falcosecurity-scap-dkms). sysreplay captures with eBPF
# and never loads it, and while it is installed a kernel image install runs DKMS, whose build of the
# 2022 driver fails for 6.12 and with it the install of the headers above.
remove_dkms_driver() {
    if is_installed falcosecurity-scap-dkms; then
        log "removing falcosecurity-scap-dkms (unused kernel driver; breaks kernel package installs)"
        DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq falcosecurity-scap-dkms >/dev/null
    fi
}

# Finish a package install that an earlier run left half-configured (interrupted, or failed).
repair_dpkg() {
    if [[ -n $(dpkg --audit 2>/dev/null) ]]; then
        log "finishing half-configured packages (dpkg --configure -a)"
        remove_dkms_driver
        DEBIAN_FRONTEND=noninteractive dpkg --configure -a >/dev/null
    fi
}

mount_tracefs() {
    if ! mountpoint -q /sys/kernel/tracing; then
        mount -t tracefs tracefs /sys/kernel/tracing
        CHANGED=1
        log "mounted tracefs at /sys/kernel/tracing"
    fi
}

venv_is_usable() {
    [[ -x $VENV/bin/python ]] \
        && grep -qx 'include-system-site-packages = true' "$VENV/pyvenv.cfg" \
        && grep -qx "home = $(dirname "$PYTHON")" "$VENV/pyvenv.cfg"
}

setup_venv() {
    local want
    want=$(cat "$ROOT/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)
    if venv_is_usable && [[ -f $STAMP && $(cat "$STAMP") == "$want" ]]; then
        return
    fi
    if ! venv_is_usable; then
        log "creating $VENV from $PYTHON (with system site-packages)"
        "$PYTHON" -m venv --clear --system-site-packages "$VENV"
    fi
    log "pip install -e '.[dev]'"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "${ROOT}[dev]"
    printf '%s\n' "$want" >"$STAMP"
}

main() {
    [[ $(id -u) == 0 ]] || die "run as root (apt-get, /lib/modules and tracefs need it)"
    [[ -r /etc/debian_version ]] || die "this script prepares Debian 12 machines only"
    repair_dpkg
    install_packages
    install_headers
    mount_tracefs
    setup_venv
    if [[ $CHANGED == 1 ]]; then
        "$ROOT/scripts/check-bpf.sh" \
            || log "warning: BPF does not work here: capture and the root tests will fail"
    fi
    log "ready: $VENV"
}

main "$@"
