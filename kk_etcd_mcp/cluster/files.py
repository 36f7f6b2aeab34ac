"""Writing a file into a directory all at once: a temporary file beside it, then a no-clobber link.

The temporary file is hidden (``.<name>.<random>.part``), readable by the owner only, and removed on
any failure or cancellation, so the target name either does not exist or holds the complete file.
Writes are gathered into blocks of ``BLOCK`` bytes; they, and every other file operation here, are done
in a worker thread, off the event loop.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from types import TracebackType

import anyio
import platformdirs

from ..errors import InvalidArgumentError, LocalIOError

BLOCK = 1 << 20


def default_backup_dir() -> Path:
    """Where snapshots go unless backup_dir is set: the user's data directory."""
    return Path(platformdirs.user_data_dir("kk-etcd-mcp")) / "backups"


async def ensure_directory(path: Path) -> None:
    """Create ``path`` (owner-only) when missing; refuse when it is something else."""
    try:
        await anyio.to_thread.run_sync(lambda: path.mkdir(mode=0o700, parents=True, exist_ok=True))
    except FileExistsError:
        raise LocalIOError(f"backup_dir {path} exists but is not a directory; set backup_dir to a directory") from None
    except OSError as exc:
        raise LocalIOError(f"cannot create backup_dir {path}: {exc.strerror}") from None


async def refuse_existing(target: Path) -> None:
    if await anyio.to_thread.run_sync(os.path.lexists, target):
        raise _exists(target)


def _exists(target: Path) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"a file named {target.name} already exists in backup_dir ({target.parent}); choose another name "
        "(snapshots are never overwritten). Nothing was written."
    )


class AtomicFile:
    """``async with AtomicFile(target) as f: await f.write(b)``; ``await f.commit()`` puts it in place."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self._buffer = bytearray()
        self._fd = -1
        self._temp: Path | None = None
        self._committed = False

    async def __aenter__(self) -> AtomicFile:
        try:
            fd, temp = await anyio.to_thread.run_sync(
                lambda: tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".part")
            )
        except OSError as exc:
            raise self._failed("create a file in", exc) from None
        self._fd, self._temp = fd, Path(temp)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._committed:
            with anyio.CancelScope(shield=True):  # also when leaving by cancellation: nothing is left behind
                await anyio.to_thread.run_sync(self._discard)

    async def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= BLOCK:
            await self._flush()

    async def commit(self) -> None:
        """Flush, sync, and link the file to its target name; fails if that name appeared meanwhile."""
        await self._flush()
        try:
            await anyio.to_thread.run_sync(self._sync_and_link)
        except FileExistsError:
            raise _exists(self.target) from None
        except OSError as exc:
            raise self._failed("save the snapshot in", exc) from None
        self._committed = True

    async def _flush(self) -> None:
        if not self._buffer:
            return
        block, self._buffer = bytes(self._buffer), bytearray()
        try:
            await anyio.to_thread.run_sync(self._write_all, block)
        except OSError as exc:
            raise self._failed("write to", exc) from None

    def _write_all(self, block: bytes) -> None:
        view = memoryview(block)
        while view:
            view = view[os.write(self._fd, view) :]

    def _sync_and_link(self) -> None:
        assert self._temp is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        try:
            os.link(self._temp, self.target)  # unlike rename, never replaces an existing file
        except FileExistsError:
            raise
        except OSError:
            # A filesystem without hard links: check, then rename (only a racing writer slips in between).
            if os.path.lexists(self.target):
                raise FileExistsError(self.target) from None
            os.rename(self._temp, self.target)
        else:
            self._temp.unlink()
        self._temp = None
        with contextlib.suppress(OSError):  # make the new name durable too, where the platform allows
            dir_fd = os.open(self.target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _discard(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        if self._temp is not None:
            with contextlib.suppress(OSError):
                self._temp.unlink()
            self._temp = None

    def _failed(self, doing: str, exc: OSError) -> LocalIOError:
        return LocalIOError(f"cannot {doing} backup_dir {self.target.parent}: {exc.strerror}. Nothing was saved.")
