"""Which process holds a port or a file lock, so a start-up error can name it (pid and command line).

Linux answers from /proc (listening sockets in /proc/net/tcp*, their owners in /proc/<pid>/fd, flock
owners in /proc/locks); elsewhere (macOS) from ``lsof`` when it is installed. Only processes this user
may inspect are found; every lookup returns None rather than fail, since it only improves a message.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp
_COMMAND_CHARS = 160


@dataclass(frozen=True)
class Holder:
    pid: int
    argv: tuple[str, ...]

    @property
    def name(self) -> str:
        return Path(self.argv[0]).name if self.argv else "?"

    def option(self, flag: str) -> str | None:
        """The value of ``--flag=value`` or ``--flag value`` on its command line."""
        for index, arg in enumerate(self.argv):
            if arg.startswith(f"{flag}="):
                return arg.split("=", 1)[1]
            if arg == flag and index + 1 < len(self.argv):
                return self.argv[index + 1]
        return None

    def describe(self) -> str:
        command = " ".join(self.argv) or "?"
        if len(command) > _COMMAND_CHARS:
            command = command[: _COMMAND_CHARS - 3] + "..."
        return f"pid {self.pid} ({command})"


def process(pid: int) -> Holder | None:
    """The process ``pid`` with its command line, or None when it is gone (or not ours to see)."""
    cmdline = _PROC / str(pid) / "cmdline"
    if _PROC.is_dir():
        try:
            raw = cmdline.read_bytes()
        except OSError:
            return None
        return Holder(pid, tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part))
    text = _run("ps", "-o", "command=", "-p", str(pid))
    return Holder(pid, tuple(text.split())) if text else None


def port_holder(port: int) -> Holder | None:
    """The process listening on TCP ``port`` (any local address)."""
    if (_PROC / "net" / "tcp").exists():
        inodes = _listening_inodes(port)
        pid = _pid_with_socket(inodes) if inodes else None
    else:
        pid = _first_pid(_run("lsof", "-nP", "-t", f"-iTCP:{port}", "-sTCP:LISTEN"))
    return process(pid) if pid is not None else None


def lock_holder(path: Path) -> Holder | None:
    """The process holding a flock (or POSIX lock) on ``path``."""
    try:
        stat = path.stat()
    except OSError:
        return None
    locks = _PROC / "locks"
    if not locks.exists():
        return process(pid) if (pid := _first_pid(_run("lsof", "-t", str(path)))) is not None else None
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        lines = locks.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 14678 fe:00:2147405 0 EOF"; OFD locks have no owner pid (-1).
        if len(fields) >= 6 and fields[5] == device and fields[4].isdigit():
            return process(int(fields[4]))
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _pid_with_socket(inodes: set[str]) -> int | None:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        return int(entry.name)
    return None


def _run(*command: str) -> str:
    if shutil.which(command[0]) is None:
        return ""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def _first_pid(text: str) -> int | None:
    first = text.split()[0] if text.split() else ""
    return int(first) if first.isdigit() else None
