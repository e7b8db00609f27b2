"""One image per suite environment (common/envspec.py), built on the sandbox image and content-addressed by the spec.

Offline with respect to the sandbox: the wheels are fetched on the host with pip (for the image's Python 3.11 and
manylinux x86_64, binary wheels only; a pin published only as source is built into a wheel on the host when it
is pure Python), cached under the cache root, copied into a build container with the engine's
archive API (so a remote engine works the same), and installed there with `pip --no-index` from the pip wheel
itself; the build container has no network. Then the import of every preloaded module is checked and the result is
committed as the environment's package image (`codeparrot-sandbox-pkgs:NAME-HASH`, on the sandbox's base OS), on
which the worker is added exactly as for the sandbox image (sandbox/Dockerfile): a change to the worker rebuilds
that thin layer only, not gigabytes of packages. The tag addresses the content (packages, files) and the sandbox
sources; what the worker preloads and the variables samples see are run-time settings passed on the worker's
command line (`--suite-env`). Hardening is the container policy's, the same for every image.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from common.envspec import EnvSpec
from common.errors import UserError
from common.paths import cache_root

ENV_REPO = "codeparrot-sandbox-env"
PACKAGES_REPO = "codeparrot-sandbox-pkgs"  # the environment's packages on the base OS, without the worker
IMAGE_PYTHON = "3.11"  # the sandbox image's interpreter (python:3.11-slim, or Debian bookworm's python3)
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
             "manylinux1_x86_64", "manylinux_2_5_x86_64", "linux_x86_64")
INSTALL_SCRIPT = r'''
import glob, json, os, subprocess, sys, shutil
spec = json.load(open("/wheels/spec.json"))
pip = glob.glob("/wheels/_pip/pip-*.whl")[0]
r = subprocess.run([sys.executable, pip + "/pip", "install", "--no-index", "--find-links", "/wheels",
                    "--ignore-installed", "--break-system-packages", "--no-warn-script-location",
                    "--disable-pip-version-check", "-q", "-r", "/wheels/requirements.txt"])
if r.returncode:
    sys.exit("pip install failed")
shutil.rmtree("/wheels", ignore_errors=True)
env = {**os.environ, **dict(spec["env"]), "MPLCONFIGDIR": "/tmp/mpl-build"}
for name in spec["preload"]:  # what the worker will preload, each in a fresh interpreter (the packages' .pth files)
    r = subprocess.run([sys.executable, "-c", f"import {name}"], env=env, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"import {name} failed: " + ((r.stderr.strip().splitlines() or ["?"])[-1]))
shutil.rmtree("/tmp/mpl-build", ignore_errors=True)
print("env-ok")
'''


def _log(msg: str) -> None:
    print(f"[sandbox] {msg}", file=sys.stderr, flush=True)


def env_tag(spec: EnvSpec, base_tag: str) -> str:
    """The image's tag: the environment's name, and a hash of its spec and of the sandbox image under it."""
    import hashlib

    h = hashlib.sha256(f"{spec.image_hash}\0{base_tag}".encode()).hexdigest()[:12]
    return f"{ENV_REPO}:{spec.name}-{h}"


def wheel_dir(spec: EnvSpec) -> Path:
    return cache_root() / "wheels" / f"{spec.name}-{spec.image_hash}"


_MISSING = re.compile(r"(?:No matching distribution found for|Could not find a version that satisfies the "
                      r"requirement) (\S+)")


PURE_PYTHON = ("-py3-none-any.whl", "-py2.py3-none-any.whl")


def _pin_named(pins: list[str], missing: str) -> str | None:
    """The pin of `pins` that pip's "no matching distribution for NAME==VERSION" names."""
    norm = re.sub(r"[-_.]+", "-", missing.split("==")[0]).lower()
    return next((p for p in pins if re.sub(r"[-_.]+", "-", p.split("==")[0].split("[")[0]).lower() == norm), None)


def _pure_wheel_from_sdist(pin: str, dest: Path) -> bool:
    """A pin the index has only as source (BigCodeBench's wikipedia, wordninja, Flask-Mail): its wheel built on the
    host, kept only when it is pure Python (py3-none-any), which installs the same under the image's interpreter.
    A package with compiled code must come as a wheel for the image's Python: False."""
    with tempfile.TemporaryDirectory(prefix="sdist-") as build:
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-binary", ":all:", "-w", build,
                            "--disable-pip-version-check", "-q", pin], capture_output=True, text=True)
        built = list(Path(build).glob("*.whl"))
        if r.returncode != 0 or len(built) != 1 or not built[0].name.endswith(PURE_PYTHON):
            return False
        _log(f"built {built[0].name} from its source distribution (pure Python; the index has no wheel)")
        shutil.move(str(built[0]), str(dest / built[0].name))
        return True


def fetch_wheels(spec: EnvSpec) -> Path:
    """Every pinned wheel (and a pip wheel to install them with), downloaded once into the cache; a download that
    stops half-way leaves nothing (a temporary directory renamed when complete)."""
    final = wheel_dir(spec)
    if (final / "requirements.txt").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        (tmp / "requirements.txt").write_text("\n".join(spec.requirements) + "\n")
        base = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", IMAGE_PYTHON,
                "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
                *[a for p in PLATFORMS for a in ("--platform", p)], "--platform", "any",
                "--disable-pip-version-check", "-q"]
        _log(f"fetching {len(spec.requirements)} pinned wheels for environment {spec.name} (Python {IMAGE_PYTHON})")
        todo = list(spec.requirements)
        for what, args in (("the environment", ["-d", str(tmp), "--no-deps", "-r", str(tmp / "todo.txt")]),
                           ("pip", ["-d", str(tmp / "_pip"), "pip"])):
            while True:
                (tmp / "todo.txt").write_text("\n".join(todo) + "\n")
                r = subprocess.run(base + args, capture_output=True, text=True)
                if r.returncode == 0:
                    break
                missing = _MISSING.search(r.stderr or "")
                pin = _pin_named(todo, missing.group(1)) if missing and what != "pip" else None
                if pin is not None and _pure_wheel_from_sdist(pin, tmp):
                    todo.remove(pin)  # built on the host from its source; the others are fetched again
                    continue
                what = f"package {missing.group(1)}" if missing else what
                tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
                raise UserError(f"environment {spec.name}: cannot fetch {what} as a wheel for Python {IMAGE_PYTHON} "
                                f"on manylinux x86_64 ({tail[0][:160]}): check that the package index answers "
                                f"(pip config) and that the pin exists for this Python, then re-run")
        (tmp / "todo.txt").unlink()
        (tmp / "spec.json").write_text(json.dumps({"name": spec.name, "preload": list(spec.preload),
                                                   "env": [list(kv) for kv in spec.env],
                                                   "packages": spec.packages()}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _context_tar(wheels: Path, files=()):
    out = tempfile.TemporaryFile()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(str(wheels), arcname="wheels")
        data = INSTALL_SCRIPT.encode()
        info = tarfile.TarInfo("wheels/install.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for dest, src in files:  # data the tests read offline, at their place in the image, world-readable
            info = tar.gettarinfo(src, arcname=dest.lstrip("/"))
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "root", "root"
            with open(src, "rb") as f:
                tar.addfile(info, f)
    out.seek(0)
    return out


def packages_tag(spec: EnvSpec, os_base: str) -> str:
    import hashlib

    h = hashlib.sha256(f"{spec.image_hash}\0{os_base}".encode()).hexdigest()[:12]
    return f"{PACKAGES_REPO}:{spec.name}-{h}"


def build_env_image(engine, spec: EnvSpec, base_tag: str, tag: str) -> None:
    """The environment's packages on the sandbox's base OS image (built once per spec: sandbox/worker changes do
    not reinstall them), then the worker on top, exactly as the sandbox image is built (sandbox/Dockerfile)."""
    from sandbox.image import build_image, pick_base

    os_base = pick_base(engine)
    pkgs = packages_tag(spec, os_base)
    if not engine.has_image(pkgs):
        build_packages_image(engine, spec, os_base, pkgs)
    build_image(engine, tag, base=pkgs)
    if not engine.has_image(tag):
        raise UserError(f"building {tag} on {engine.url} left no image: see the engine's log")
    for repo, keep in ((ENV_REPO, tag), (PACKAGES_REPO, pkgs)):  # older builds of this environment: never used again
        for img in engine.client.api.images(name=repo):
            for t in img.get("RepoTags") or []:
                if t != keep and t.startswith(f"{repo}:{spec.name}-") and t[len(repo) + len(spec.name) + 2:].isalnum():
                    try:
                        engine.client.api.remove_image(t)
                    except Exception:  # noqa: BLE001 - in use by a running container: next time
                        pass


def build_packages_image(engine, spec: EnvSpec, base_tag: str, tag: str) -> None:
    """pip-installs the cached wheels into a container of the base OS image (no network) and commits it as `tag`."""
    if spec.debian:
        raise UserError(f"environment {spec.name} needs Debian packages ({', '.join(spec.debian)}), which this "
                        "sandbox cannot install yet: drop them from the environment or extend sandbox/envimage.py")
    wheels = fetch_wheels(spec)
    api = engine.client.api
    t0 = time.perf_counter()
    _log(f"building {tag} on {engine.url} ({len(spec.requirements)} packages, offline)")
    cid = api.create_container(base_tag, entrypoint=["python3", "/wheels/install.py"], command=[],
                               network_disabled=True, working_dir="/",
                               labels={"codeparrot-harness.sandbox-env-build": spec.name},
                               host_config=api.create_host_config(network_mode="none"))["Id"]
    try:
        with _context_tar(wheels, spec.files) as archive:
            api.put_archive(cid, "/", archive)
        api.start(cid)
        status = api.wait(cid, timeout=3600).get("StatusCode", 1)
        logs = api.logs(cid).decode(errors="replace").strip()
        if status != 0 or "env-ok" not in logs:
            last = (logs.splitlines() or ["no output"])[-1]
            raise UserError(f"environment {spec.name}: installing it in the sandbox image failed ({last[:200]}): "
                            f"fix the pins of {spec.name} (a wheel that needs another Python, a missing dependency "
                            "pin) and re-run `harness sandbox build`")
        changes = ["ENTRYPOINT []", "CMD []", "WORKDIR /",
                   f"LABEL codeparrot-harness.sandbox-env={spec.name} "
                   f"codeparrot-harness.sandbox-env-hash={spec.image_hash}"]
        api.commit(cid, repository=tag.split(":")[0], tag=tag.split(":")[1], changes=changes)
    finally:
        try:
            api.remove_container(cid, force=True)
        except Exception:  # noqa: BLE001 - a container left behind is removed with the next build's
            pass
    if not engine.has_image(tag):
        raise UserError(f"building {tag} on {engine.url} left no image: see the engine's log")
    _log(f"built {tag} in {time.perf_counter() - t0:.0f} s ({image_size_mb(engine, tag):.0f} MB)")


def image_size_mb(engine, tag: str) -> float:
    return engine.client.api.inspect_image(tag).get("Size", 0) / 2**20


def ensure_env_image(spec: EnvSpec, base_tag: str, engine, donors=()) -> str:
    """The tag of `spec`'s image on `engine`: present already, copied from a donor engine that has it, or built."""
    from sandbox.image import copy_image

    tag = env_tag(spec, base_tag)
    if tag in engine.ready_tags or engine.has_image(tag):
        engine.ready_tags.add(tag)
        return tag
    donor = next((d for d in donors if d is not engine and d.has_image(tag)), None)
    if donor is not None:
        copy_image(tag, donor, engine)
    else:
        build_env_image(engine, spec, base_tag, tag)
    engine.ready_tags.add(tag)
    return tag
