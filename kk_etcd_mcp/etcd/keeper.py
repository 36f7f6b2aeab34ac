"""The keeper: a small process that runs the embedded etcd of one data dir while any server uses it.

The model (README, "The embedded etcd"): every ``serve --embedded-etcd`` on the same data dir shares
one etcd. The first server starts a keeper (``python -m kk_etcd_mcp.etcd.keeper``, detached in its own
session), which starts etcd as its own child; later servers join it. Beside the data dir
(``.../etcd``) live:

- ``etcd.keeper``: the keeper holds an exclusive flock on it for its lifetime; its content (JSON) says
  who it is: keeper pid, etcd pid, client URL. No lock held means no keeper, whatever the content.
- ``etcd.users/``: one file per server using the etcd, flock-ed by that server for its lifetime. The
  kernel drops the lock when the server exits, however it exits (SIGKILL too), so a lockable file is
  a server that is gone.
- ``etcd.start.lock``: held by a server while it looks for, joins or starts a keeper, and by the keeper
  while it decides to stop; so a server never joins a keeper that is stopping.

The keeper looks at the users every ``POLL_SECONDS``. A server that stops cleanly nudges it
(SIGUSR1) to look at once; when no user is left (after ``GRACE_SECONDS`` if no server said goodbye,
as after a SIGKILL) it stops etcd and exits. etcd gets SIGTERM if the keeper itself dies (Linux:
PR_SET_PDEATHSIG). So etcd outlives its last server by a few seconds at most, and no server loses its
etcd while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from .embedded import EmbeddedEtcd, EmbeddedEtcdError

POLL_SECONDS = 0.25
GRACE_SECONDS = 2.0
NUDGE = signal.SIGUSR1  # "a user left: look now"
_ABANDONED_AFTER = 60.0


class KeeperFiles:
    """The files beside a data dir where a keeper and its servers meet (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        base, name = self.data_dir.parent, self.data_dir.name
        self.keeper = base / f"{name}.keeper"
        self.start_lock = base / f"{name}.start.lock"
        self.users = base / f"{name}.users"
        self.log = base / f"{name}.log"  # etcd's log; the keeper writes its few lines there too


@dataclass(frozen=True)
class KeeperInfo:
    keeper_pid: int
    etcd_pid: int
    client_url: str
    data_dir: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> KeeperInfo | None:
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None


def try_lock(fd: int) -> bool:
    """An exclusive flock on ``fd`` if nobody else holds one; False if somebody does."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_within(path: Path, timeout: float) -> int:
    """Open ``path`` and take its exclusive flock, waiting at most ``timeout``; the fd holds the lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    while not try_lock(fd):
        if time.monotonic() >= deadline:
            os.close(fd)
            raise EmbeddedEtcdError(f"another kk-etcd-mcp held {path} for more than {timeout:g}s; try again")
        time.sleep(0.05)
    return fd


def running_keeper(files: KeeperFiles) -> KeeperInfo | None:
    """The keeper of this data dir if one runs and is ready (it holds its file's lock and wrote who it is)."""
    try:
        fd = os.open(files.keeper, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if try_lock(fd):
            return None  # nobody holds it; closing the fd drops our lock again
        return KeeperInfo.from_json(os.pread(fd, 4096, 0).decode(errors="replace"))
    finally:
        os.close(fd)


def live_users(files: KeeperFiles, *, remove_gone: bool = False) -> list[Path]:
    """The user files whose server still runs; with ``remove_gone``, the others are deleted."""
    live = []
    with contextlib.suppress(FileNotFoundError):
        for path in files.users.iterdir():
            if path.name.startswith("."):  # a server still setting its file up (it renames it once locked)
                if remove_gone:
                    _remove_if_abandoned(path)
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                if not try_lock(fd):
                    live.append(path)
                elif remove_gone:
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)
    return live


def _remove_if_abandoned(pending: Path) -> None:
    """A set-up file left by a server that died before renaming it: unlocked and older than a minute."""
    try:
        fd = os.open(pending, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        if try_lock(fd) and time.time() - os.fstat(fd).st_mtime > _ABANDONED_AFTER:
            pending.unlink(missing_ok=True)
    finally:
        os.close(fd)


class _Keeper:
    def __init__(self, files: KeeperFiles, etcd: EmbeddedEtcd) -> None:
        self.files = files
        self.etcd = etcd
        self.stop_now = False
        self.look_now = False

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        print(f"{stamp} kk-etcd-mcp keeper[{os.getpid()}]: {message}", file=sys.stderr, flush=True)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == NUDGE:
            self.look_now = True
        else:
            self.stop_now = True

    def wait_for_last_user(self) -> None:
        """Return once no server uses etcd, holding the start lock (so nobody joins meanwhile), or on SIGTERM."""
        alone_since: float | None = None
        while not self.stop_now:
            if not self.etcd.running:
                self.log("etcd exited by itself; see its log above")
                return
            now = time.monotonic()
            if live_users(self.files, remove_gone=True):
                alone_since = None
            else:
                alone_since = now if alone_since is None else alone_since
                if (self.look_now or now - alone_since >= GRACE_SECONDS) and self._hold_start_lock():
                    if not live_users(self.files):
                        self.log("no kk-etcd-mcp server uses etcd any more: stopping it")
                        return
                    self._release_start_lock()
            self.look_now = False
            time.sleep(POLL_SECONDS)
        self.log("stopped by a signal: stopping etcd")

    _start_fd: int | None = None

    def _hold_start_lock(self) -> bool:
        fd = os.open(self.files.start_lock, os.O_RDWR | os.O_CREAT, 0o600)
        if try_lock(fd):
            self._start_fd = fd
            return True
        os.close(fd)  # a server is joining right now: look again next round
        return False

    def _release_start_lock(self) -> None:
        if self._start_fd is not None:
            os.close(self._start_fd)
            self._start_fd = None


def _report(message: dict[str, object]) -> None:
    """Tell the server that started us how the start went: one JSON line on our stdout, then close it."""
    with contextlib.suppress(OSError):
        os.write(1, (json.dumps(message) + "\n").encode())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the server reads until EOF; our stdout must not keep its pipe open
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kk_etcd_mcp.etcd.keeper")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--client-port", type=int, required=True)
    parser.add_argument("--peer-port", type=int, required=True)
    parser.add_argument("--start-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    # Detach: the server waits only for this first process; the keeper proper is reparented to init, so it
    # is nobody's zombie when it exits, and its session (made by the server) keeps terminal signals away.
    if os.fork() > 0:
        os._exit(0)

    files = KeeperFiles(args.data_dir)
    keeper_fd = os.open(files.keeper, os.O_RDWR | os.O_CREAT, 0o600)
    if not try_lock(keeper_fd):
        _report({"error": f"another keeper runs the etcd of data dir {files.data_dir}"})
        return 1
    etcd = EmbeddedEtcd(
        files.data_dir,
        args.client_port,
        args.peer_port,
        host=args.host,
        log_file=files.log,
        die_with_parent=True,  # started from this (main) thread, which lives as long as the keeper
    )
    keeper = _Keeper(files, etcd)
    for signum in (signal.SIGTERM, signal.SIGINT, NUDGE):
        signal.signal(signum, keeper.on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        etcd.start(args.start_timeout)
    except EmbeddedEtcdError as exc:
        _report({"error": str(exc)})
        return 1
    assert etcd.pid is not None
    info = KeeperInfo(os.getpid(), etcd.pid, etcd.client_url, str(files.data_dir))
    os.ftruncate(keeper_fd, 0)
    os.pwrite(keeper_fd, info.to_json().encode(), 0)
    keeper.log(f"etcd (pid {etcd.pid}) runs at {etcd.client_url} while kk-etcd-mcp servers use it")
    _report({"ready": asdict(info)})
    try:
        keeper.wait_for_last_user()
    finally:
        etcd.stop()
        os.ftruncate(keeper_fd, 0)
        os.close(keeper_fd)  # now a server may start a new keeper
        keeper._release_start_lock()
    keeper.log("etcd stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
