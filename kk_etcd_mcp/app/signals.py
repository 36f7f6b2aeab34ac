"""SIGINT and SIGTERM stop a long-running command: ``serve``, ``hub``, ``services --watch`` and ``etcd``."""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from ..errors import leaf_exceptions

log = logging.getLogger(__name__)


@dataclass
class Running:
    """The block ``run_until_signal`` runs: its background tasks, and what a signal does to it."""

    tasks: TaskGroup  # cancelled when the block ends
    on_signal: Callable[[], None]  # cancel the block, unless the block sets a gentler stop (uvicorn's)


@asynccontextmanager
async def run_until_signal() -> AsyncIterator[Running]:
    """Run the block until it ends or SIGINT/SIGTERM arrives.

    Signals are caught before the block starts, so one that arrives during start-up still lets the
    block clean up (leave the embedded etcd, close the client) instead of killing the process. Each
    signal is logged and calls ``on_signal``. An error of the block comes out as itself, not inside
    the task group's exception group, so that the command reports it in one line.
    """
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:
                running = Running(tg, tg.cancel_scope.cancel)

                async def stop_on_signal() -> None:
                    async for signum in signals:
                        log.info("received %s; shutting down", signal.Signals(signum).name)
                        running.on_signal()

                tg.start_soon(stop_on_signal)
                try:
                    yield running
                finally:
                    tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaves = leaf_exceptions(group)
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            raise leaves[0] from None
        raise
