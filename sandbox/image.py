"""Builds the sandbox image: from python:3.11-slim when a registry answers, else from a debootstrapped Debian base."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common.errors import UserError

HERE = Path(__file__).resolve().parent
IMAGE_SOURCES = ("Dockerfile", "worker")  # everything copied into the image (the worker package whole); the tag
# hashes these
IMAGE_REPO = "codeparrot-sandbox"
REGISTRY_BASE = "python:3.11-slim"
OFFLINE_PACKAGES = ("python3", "python3-numpy")  # from Debian's packages; the base tag names them
OFFLINE_BASE = "codeparrot-sandbox-base:bookworm-" + "-".join(OFFLINE_PACKAGES)
DEBIAN_MIRROR = os.environ.get("HARNESS_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def _engine(engine=None):
    from sandbox.engine import Engine

    return engine if engine is not None else Engine()


def source_files() -> list[Path]:
    """Every file copied into the image, in a fixed order (the worker package's .py files, not caches)."""
    files = []
    for name in IMAGE_SOURCES:
        path = HERE / name
        files += sorted(path.glob("*.py")) if path.is_dir() else [path]
    return files


def image_tag() -> str:
    h = hashlib.sha256()
    for path in source_files():
        h.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{IMAGE_REPO}:{h.hexdigest()[:12]}"


def _log(msg: str) -> None:
    print(f"[sandbox] {msg}", file=sys.stderr, flush=True)


def _check_stream(events, what: str) -> None:
    """Engine progress messages (build, import, load): the first error becomes one line."""
    for event in events:
        if isinstance(event, dict) and event.get("error"):
            raise UserError(f"{what} failed: {str(event['error']).strip().splitlines()[-1]}")


def build_offline_base(engine) -> str:
    """debootstrap a minimal Debian bookworm with python3 from Debian's packages, then import it on the engine."""
    if engine.has_image(OFFLINE_BASE):
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
        archive = os.path.join(tmp, "rootfs.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", archive, "."], check=True)
        repo, _, tag = OFFLINE_BASE.partition(":")
        out = engine.client.api.import_image_from_file(archive, repository=repo, tag=tag)
        _check_stream((json.loads(line) for line in str(out).splitlines() if line.strip().startswith("{")),
                      "importing the offline sandbox base")
    if not engine.has_image(OFFLINE_BASE):
        raise UserError(f"importing the offline sandbox base on {engine.url} left no {OFFLINE_BASE}: see the engine's log")
    return OFFLINE_BASE


def pick_base(engine) -> str:
    if engine.has_image(REGISTRY_BASE):
        return REGISTRY_BASE
    if os.environ.get("HARNESS_SANDBOX_OFFLINE") != "1" and not engine.has_image(OFFLINE_BASE):
        try:
            repo, _, tag = REGISTRY_BASE.partition(":")
            engine.client.api.pull(repo, tag=tag)
            if engine.has_image(REGISTRY_BASE):
                return REGISTRY_BASE
        except Exception:  # noqa: BLE001 - no registry: build offline
            pass
        _log(f"no registry reachable for {REGISTRY_BASE}: building the base offline")
    return build_offline_base(engine)


def copy_image(tag: str, source, target) -> None:
    """Streams an image from one engine to another (docker save | docker load), without a registry."""
    _log(f"copying {tag} from {source.url} to {target.url}")
    _check_stream(target.client.api.load_image(source.client.api.get_image(tag)), f"loading {tag} on {target.url}")


def ensure_image(rebuild: bool = False, engine=None, donors=()) -> str:
    """The tag of an image built from the current sandbox sources, present on `engine` (default: the local one).

    A missing image is copied from a donor engine that has it, else built (from python:3.11-slim, or from a
    debootstrapped base when no registry answers).
    """
    engine = _engine(engine)
    tag = image_tag()
    if tag in engine.ready_tags and not rebuild:
        return tag
    if engine.has_image(tag) and not rebuild:
        engine.ready_tags.add(tag)
        return tag
    donor = next((d for d in donors if d is not engine and not rebuild and d.has_image(tag)), None)
    if donor is not None:
        copy_image(tag, donor, engine)
    else:
        build_image(engine, tag)
    engine.ready_tags.add(tag)
    return tag


def build_image(engine, tag: str, base: str | None = None) -> None:
    """The worker on `base` (default: python:3.11-slim or the offline base; a suite environment's package image)."""
    base = base or pick_base(engine)
    with tempfile.TemporaryDirectory(prefix="sandbox-ctx-") as ctx:
        for path in source_files():
            target = os.path.join(ctx, str(path.relative_to(HERE)))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy(path, target)
        _log(f"building {tag} on {base} ({engine.url})")
        # The engine's classic builder (what the API's /build is) uses a local base image as it is.
        events = engine.client.api.build(path=ctx, tag=tag, buildargs={"BASE": base}, rm=True, forcerm=True,
                                         labels={"codeparrot-harness.sandbox-image": "1"}, decode=True)
        _check_stream(events, "building the sandbox image")
    if not engine.has_image(tag):
        raise UserError(f"building the sandbox image on {engine.url} left no {tag}: see the engine's log")
    if tag.startswith(IMAGE_REPO + ":"):
        remove_stale_images(engine, tag)


def remove_stale_images(engine, keep: str) -> None:
    """Images built from older sandbox sources are never used again (the tag hashes the sources)."""
    for img in engine.client.api.images(name=IMAGE_REPO):
        for t in img.get("RepoTags") or []:
            if t != keep and t.startswith(IMAGE_REPO + ":"):
                try:
                    engine.client.api.remove_image(t)
                except Exception:  # noqa: BLE001 - in use by a running container: next time
                    pass
