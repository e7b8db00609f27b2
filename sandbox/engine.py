"""Docker engines, reached through the `docker` SDK (no docker CLI needed on this host).

`engine_urls` says which engines a run uses (`--docker-host`, repeatable, or HARNESS_DOCKER_HOSTS, a comma list;
default: DOCKER_HOST or the local socket). An `Engine` is one of them: `unix://` (local), `tcp://` (TLS from the
standard DOCKER_TLS_VERIFY/DOCKER_CERT_PATH variables, as the docker CLI reads them) or `ssh://user@host` (through
paramiko, `pip install paramiko`). `Attached` is one container's stdin/stdout over the attach socket, with the
engine's 8-byte frame headers taken off.
"""
from __future__ import annotations

import os
import socket
import struct

from common.errors import UserError

DEFAULT_URL = "unix:///var/run/docker.sock"
HOSTS_ENV = "HARNESS_DOCKER_HOSTS"
API_TIMEOUT_S = 120  # one engine call (an image build streams; everything else is short)
_STDOUT = 1


def engine_urls(given: list[str] | None = None) -> list[str]:
    """The engines of this run, in order, without repeats: --docker-host, else HARNESS_DOCKER_HOSTS, else one."""
    urls = list(given or []) or [u.strip() for u in os.environ.get(HOSTS_ENV, "").split(",") if u.strip()]
    if not urls:
        urls = [os.environ.get("DOCKER_HOST") or DEFAULT_URL]
    for url in urls:
        if not url.startswith(("unix://", "tcp://", "ssh://", "http://", "https://", "npipe://")):
            raise UserError(f"unknown Docker engine address {url!r}: use unix:///path/docker.sock, tcp://host:2376 "
                            "(TLS from DOCKER_TLS_VERIFY/DOCKER_CERT_PATH) or ssh://user@host")
    return list(dict.fromkeys(urls))


def engine_error(url: str, exc: BaseException) -> str:
    """An engine failure in one line: the engine, and what the engine (or the connection) said."""
    text = str(getattr(exc, "explanation", None) or exc).strip().splitlines()
    return f"Docker engine {url}: {text[-1] if text else type(exc).__name__}"


class Engine:
    """One Docker engine. `client` is a docker.DockerClient; connection failures become UserError."""

    def __init__(self, url: str | None = None):
        import docker

        self.url = url or engine_urls()[0]
        env = dict(os.environ, DOCKER_HOST=self.url)
        try:
            self.client = docker.from_env(environment=env, timeout=API_TIMEOUT_S, max_pool_size=64)
            info = self.client.info()
        except Exception as exc:  # noqa: BLE001 - the SDK raises DockerException, requests' and paramiko's errors
            raise UserError(f"no Docker engine answers at {self.url} ({engine_error(self.url, exc)}): start one "
                            "(`make setup` does it as root, or `sudo systemctl start docker`), fix --docker-host / "
                            f"{HOSTS_ENV}, or pass --sandbox process to run samples on this host without isolation")
        self.cpus = int(info.get("NCPU") or 1)
        self.name = info.get("Name") or self.url
        self.dead = False
        self.ready_tags: set[str] = set()  # sandbox images this Engine object has checked or put there

    def __repr__(self) -> str:
        return f"Engine({self.url}, {self.cpus} CPUs)"

    def alive(self) -> bool:
        if self.dead:
            return False
        api = self.client.api
        try:
            api._result(api._get(api._url("/_ping"), timeout=5))  # ping(), with a short timeout
            return True
        except Exception:  # noqa: BLE001 - any failure to answer means gone
            self.dead = True
            return False

    def has_image(self, tag: str) -> bool:
        import docker

        try:
            self.client.api.inspect_image(tag)
            return True
        except docker.errors.ImageNotFound:
            return False

    def start_attached(self, spec: dict) -> "Attached":
        """Creates a container from a `policy.container_spec`, attaches to its stdin/stdout, then starts it.

        Attaching before the start means no output is missed; the container removes itself when it exits.
        """
        api = self.client.api
        host_config = api.create_host_config(**spec["host_config"])
        cid = api.create_container(**{**spec["create"], "host_config": host_config})["Id"]
        try:
            raw = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stream": 1})
            api.start(cid)
        except Exception:
            self.remove(cid)
            raise
        return Attached(raw, cid)

    def remove(self, cid: str) -> None:
        """Force-removes a container; an engine that is gone, or a container already gone, is not an error."""
        try:
            self.client.api.remove_container(cid, force=True)
        except Exception:  # noqa: BLE001
            pass

    def labelled_containers(self, label: str) -> list[dict]:
        return self.client.api.containers(all=True, filters={"label": label})


class Attached:
    """A container's stdin (write) and stdout (read, de-framed) over the engine's hijacked attach connection."""

    def __init__(self, raw, cid: str):
        self.cid = cid
        self._raw = raw
        # unix and plain tcp hand back a SocketIO around the socket; TLS an SSLSocket; ssh a paramiko Channel
        self._sock = getattr(raw, "_sock", raw)
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close_stdin(self) -> None:
        """Half-closes the connection: the engine closes the container's stdin (stdin_once), the worker stops."""
        try:
            if hasattr(self._sock, "shutdown_write"):  # paramiko
                self._sock.shutdown_write()
            else:
                self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        for closer in (getattr(self._sock, "close", None), getattr(self._raw, "close", None)):
            try:
                if closer:
                    closer()
            except OSError:
                pass

    def _recv(self, n: int) -> bytes:
        try:
            return self._sock.recv(n)
        except OSError:
            return b""

    def stdout_chunks(self):
        """Yields the container's stdout payloads until the stream ends (container gone, engine gone, or closed).

        Each frame is an 8-byte header (stream type, 3 zero bytes, big-endian payload length) and the payload.
        """
        buf = self._buf
        while True:
            while len(buf) >= 8:
                kind, size = buf[0], struct.unpack(">I", buf[4:8])[0]
                if len(buf) < 8 + size:
                    break
                payload = bytes(buf[8:8 + size])
                del buf[:8 + size]
                if kind == _STDOUT:
                    yield payload
            data = self._recv(1 << 16)
            if not data:
                return
            buf += data

    def lines(self):
        """The container's stdout, line by line (bytes, without the newline)."""
        pending = b""
        for chunk in self.stdout_chunks():
            pending += chunk
            *full, pending = pending.split(b"\n")
            yield from full
