"""A server's side of the shared embedded etcd: join the keeper of a data dir, or start one (see keeper.py).

``join_shared_etcd`` registers this process as a user of the data dir's etcd (a flock-ed file in
``<data dir>.users/``, held until ``SharedEtcd.close()`` or until the process dies), then, under the start
lock, joins the running keeper or starts a new one. A data dir that another etcd holds fails at once,
naming that etcd's pid and URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import site
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .embedded import EmbeddedEtcdError, accepts_connections, data_dir_in_use, describe_data_dir_user, http_url
from .keeper import NUDGE, KeeperFiles, KeeperInfo, live_users, lock_within, running_keeper, try_lock

Left = Literal["stopped", "shared", "stopping"]
START_TIMEOUT = 30.0  # etcd's own start, inside the keeper
_STOP_WAIT = 4.0  # a clean exit waits this long for the keeper to stop etcd (a stop ends within 5 s)


@dataclass
class SharedEtcd:
    """This server's use of the embedded etcd; ``close()`` ends it (and stops etcd if no other server uses it)."""

    info: KeeperInfo
    started: bool  # this server started the keeper (else it joined one)
    files: KeeperFiles
    _user_fd: int | None = field(default=None, repr=False)
    _user_file: Path | None = field(default=None, repr=False)

    def others(self) -> int:
        """How many other servers use this etcd now."""
        return len([p for p in live_users(self.files) if p != self._user_file])

    def close(self) -> Left:
        """Leave; when no other server uses etcd, have the keeper stop it now, and wait (bounded) until it has:
        ``stopped``; ``shared`` when other servers use it; ``stopping`` when the keeper is not done yet."""
        _release_user(self._user_fd, self._user_file)
        self._user_fd = self._user_file = None
        if live_users(self.files):
            return "shared"
        keeper = running_keeper(self.files)
        if keeper is None or keeper.keeper_pid != self.info.keeper_pid:
            return "stopped"  # already gone
        with contextlib.suppress(ProcessLookupError):
            os.kill(keeper.keeper_pid, NUDGE)
        deadline = time.monotonic() + _STOP_WAIT
        while _keeper_lock_held(self.files) and time.monotonic() < deadline:
            time.sleep(0.05)
        return "stopping" if _keeper_lock_held(self.files) else "stopped"


def join_shared_etcd(data_dir: Path, host: str, client_port: int, peer_port: int) -> SharedEtcd | None:
    """Use the data dir's shared etcd at ``host:client_port``, starting it if none runs.

    None: no keeper runs for this data dir and something else already listens on the client port (the
    caller finds out what); nothing was started. Raises EmbeddedEtcdError with one clear sentence.
    """
    files = KeeperFiles(data_dir)
    if running_keeper(files) is None and not data_dir_in_use(data_dir) and accepts_connections(host, client_port):
        return None  # another etcd (or not etcd at all) serves the port: create nothing
    try:
        files.users.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedEtcdError(f"cannot create {files.users} for the embedded etcd: {exc}") from exc
    user_fd, user_file = _register_user(files)
    try:
        start_fd = lock_within(files.start_lock, START_TIMEOUT * 2)
        try:
            shared = _join_or_start(files, host, client_port, peer_port)
        finally:
            os.close(start_fd)
    except BaseException:
        _release_user(user_fd, user_file)
        raise
    if shared is None:
        _release_user(user_fd, user_file)
        return None
    shared._user_fd, shared._user_file = user_fd, user_file
    return shared


def _join_or_start(files: KeeperFiles, host: str, client_port: int, peer_port: int) -> SharedEtcd | None:
    wanted = http_url(host, client_port)
    keeper = _wait_for_ready_keeper(files)
    if keeper is not None:
        if keeper.client_url != wanted:
            raise EmbeddedEtcdError(
                f"the etcd data dir {files.data_dir} is in use by the embedded etcd (pid {keeper.etcd_pid}) at "
                f"{keeper.client_url}, which other kk-etcd-mcp servers share; to share it, set endpoints to "
                f"{keeper.client_url}; else choose another data_dir."
            )
        return SharedEtcd(keeper, started=False, files=files)
    if data_dir_in_use(files.data_dir):
        raise EmbeddedEtcdError(
            f"the etcd data dir {files.data_dir} is in use by {describe_data_dir_user(files.data_dir)}, which no "
            "kk-etcd-mcp server started (left over from an older version?): stop it, or choose another data_dir, "
            "or drop embedded_etcd to use it as an external etcd."
        )
    if accepts_connections(host, client_port):
        return None
    return SharedEtcd(_start_keeper(files, host, client_port, peer_port), started=True, files=files)


def _wait_for_ready_keeper(files: KeeperFiles) -> KeeperInfo | None:
    """The running keeper; one still starting etcd (its server died meanwhile) is waited for, bounded."""
    deadline = time.monotonic() + START_TIMEOUT + 5
    while True:
        keeper = running_keeper(files)
        if keeper is not None or not _keeper_lock_held(files) or time.monotonic() >= deadline:
            return keeper
        time.sleep(0.1)


def _keeper_lock_held(files: KeeperFiles) -> bool:
    try:
        fd = os.open(files.keeper, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        return not try_lock(fd)
    finally:
        os.close(fd)


def _start_keeper(files: KeeperFiles, host: str, client_port: int, peer_port: int) -> KeeperInfo:
    import kk_etcd_mcp

    # Run from a source tree (not installed), the package is found only through the tree's root.
    package_root = str(Path(kk_etcd_mcp.__file__).resolve().parent.parent)
    env = dict(os.environ)
    if package_root not in {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    command = [
        sys.executable, "-m", "kk_etcd_mcp.etcd.keeper",
        f"--data-dir={files.data_dir}", f"--host={host}",
        f"--client-port={client_port}", f"--peer-port={peer_port}", f"--start-timeout={START_TIMEOUT:g}",
    ]  # fmt: skip
    with files.log.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # a Ctrl-C or a group kill aimed at this server must not reach it
            env=env,
        )
    assert process.stdout is not None
    with process.stdout:
        report = _read_line(process.stdout.fileno(), START_TIMEOUT + 30)
    process.wait()  # it forked the keeper proper and exited at once
    try:
        message = json.loads(report)
    except ValueError:
        raise EmbeddedEtcdError(
            f"the embedded etcd's keeper did not report a start (it said {report[:200]!r}); see {files.log}"
        ) from None
    if "error" in message:
        raise EmbeddedEtcdError(str(message["error"]))
    return KeeperInfo(**message["ready"])


def _read_line(fd: int, timeout: float) -> str:
    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace").strip()


def _register_user(files: KeeperFiles) -> tuple[int, Path]:
    """A user file locked by us; created under a dot name and renamed once locked, so the keeper never
    mistakes a file still being set up for one whose server is gone."""
    name = f"{os.getpid()}-{secrets.token_hex(4)}"
    pending, final = files.users / f".{name}", files.users / name
    fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try_lock(fd)
    os.write(fd, json.dumps({"pid": os.getpid(), "argv": sys.argv}).encode())
    os.rename(pending, final)
    return fd, final


def _release_user(fd: int | None, path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
    if fd is not None:
        os.close(fd)
