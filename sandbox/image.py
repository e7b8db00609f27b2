"""Builds the sandbox image: from python:3.11-slim when a registry answers, else from a debootstrapped Debian base."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common.errors import UserError

HERE = Path(__file__).resolve().parent
IMAGE_SOURCES = ("Dockerfile", "worker.py")  # everything copied into the image; the tag hashes these
IMAGE_REPO = "codeparrot-sandbox"
REGISTRY_BASE = "python:3.11-slim"
OFFLINE_PACKAGES = ("python3", "python3-numpy")  # from Debian's packages; the base tag names them
OFFLINE_BASE = "codeparrot-sandbox-base:bookworm-" + "-".join(OFFLINE_PACKAGES)
DEBIAN_MIRROR = os.environ.get("HARNESS_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def docker_cmd() -> list[str]:
    """The docker CLI, honouring DOCKER_HOST as the docker CLI does."""
    exe = shutil.which("docker")
    if exe is None:
        raise UserError("no docker CLI on PATH: install Docker (make setup does it as root on Debian), "
                        "or pass --sandbox process to run samples on this host without isolation")
    return [exe]


def docker(*args: str, check: bool = True, capture: bool = True, timeout: float | None = None, **kw):
    return subprocess.run(docker_cmd() + list(args), check=check, capture_output=capture, text=True,
                          timeout=timeout, **kw)


def ensure_engine() -> None:
    """One clear line when no Docker engine answers."""
    try:
        r = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=30)
    except subprocess.TimeoutExpired:
        r = None
    if r is None or r.returncode != 0 or not r.stdout.strip():
        raise UserError("no Docker engine answers (docker info failed): start one (`make setup` does it as root, "
                        "or `sudo systemctl start docker`), or pass --sandbox process to run samples "
                        "on this host without isolation")


def image_tag() -> str:
    h = hashlib.sha256()
    for name in IMAGE_SOURCES:
        h.update(name.encode() + b"\0" + (HERE / name).read_bytes() + b"\0")
    return f"{IMAGE_REPO}:{h.hexdigest()[:12]}"


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def _log(msg: str) -> None:
    print(f"[sandbox] {msg}", file=sys.stderr, flush=True)


def build_offline_base() -> str:
    """debootstrap a minimal Debian bookworm with python3 from Debian's packages, then `docker import` it."""
    if image_exists(OFFLINE_BASE):
        return OFFLINE_BASE
    if shutil.which("debootstrap") is None:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            _log("installing debootstrap")
            subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], check=True, capture_output=True)
        else:
            raise UserError(f"no registry reachable for {REGISTRY_BASE} and no debootstrap to build a base offline: "
                            "install debootstrap (apt-get install debootstrap) and run `harness sandbox build` as root")
    if os.geteuid() != 0:
        raise UserError("building the offline sandbox base needs root (debootstrap): run `sudo harness sandbox build`")
    with tempfile.TemporaryDirectory(prefix="sandbox-rootfs-") as tmp:
        rootfs = os.path.join(tmp, "rootfs")
        _log(f"debootstrap bookworm ({', '.join(OFFLINE_PACKAGES)}) from {DEBIAN_MIRROR}, about a minute")
        r = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(OFFLINE_PACKAGES), "bookworm",
                            rootfs, DEBIAN_MIRROR],
                           capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
            raise UserError(f"debootstrap failed ({tail[0]}): check that {DEBIAN_MIRROR} is reachable "
                            "or set HARNESS_DEBIAN_MIRROR")
        # Trim what a sandbox never needs; keeps the image small and the attack surface smaller.
        for sub in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"):
            shutil.rmtree(os.path.join(rootfs, sub), ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(docker_cmd() + ["import", "-", OFFLINE_BASE], stdin=tar.stdout, capture_output=True, text=True)
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise UserError(f"docker import of the offline base failed: {imp.stderr.strip()}")
    return OFFLINE_BASE


def pick_base() -> str:
    if image_exists(REGISTRY_BASE):
        return REGISTRY_BASE
    if os.environ.get("HARNESS_SANDBOX_OFFLINE") != "1":
        try:
            if docker("pull", "-q", REGISTRY_BASE, check=False, timeout=120).returncode == 0:
                return REGISTRY_BASE
        except subprocess.TimeoutExpired:
            pass
        _log(f"no registry reachable for {REGISTRY_BASE}: building the base offline")
    return build_offline_base()


_READY: set[tuple] = set()  # (engine, tag) this process already checked: eval checks before generating, the pool again


def ensure_image(rebuild: bool = False) -> str:
    """Returns the tag of an image built from the current sandbox sources, building it when missing."""
    tag = image_tag()
    ready = (os.environ.get("DOCKER_HOST", ""), tag)
    if ready in _READY and not rebuild:
        return tag
    if image_exists(tag) and not rebuild:
        _READY.add(ready)
        return tag
    ensure_engine()
    base = pick_base()
    with tempfile.TemporaryDirectory(prefix="sandbox-ctx-") as ctx:
        for name in IMAGE_SOURCES:
            shutil.copy(HERE / name, os.path.join(ctx, name))
        _log(f"building {tag} on {base}")
        # The classic builder uses a local base image as it is; BuildKit would ask a registry for its metadata.
        env = dict(os.environ, DOCKER_BUILDKIT="0")
        r = docker("build", "--build-arg", f"BASE={base}", "--label", "codeparrot-harness.sandbox-image=1",
                   "-t", tag, ctx, check=False, env=env)
        if r.returncode != 0:
            raise UserError(f"building the sandbox image failed: {(r.stderr or r.stdout).strip().splitlines()[-1]}")
    remove_stale_images(tag)
    _READY.add(ready)
    return tag


def remove_stale_images(keep: str) -> None:
    """Images built from older sandbox sources are never used again (the tag hashes the sources)."""
    r = docker("images", IMAGE_REPO, "--format", "{{.Repository}}:{{.Tag}}", check=False)
    stale = [t for t in r.stdout.split() if t != keep]
    if stale:
        docker("rmi", *stale, check=False)
