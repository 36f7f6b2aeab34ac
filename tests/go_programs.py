"""Go programs under tests/go/, built once per test session, as outside judges of what we write.

They are built in GOPATH mode against Debian's Go packages (no module proxy is reachable):
``apt-get install golang-go golang-etcd-server-dev golang-google-protobuf-dev golang-google-grpc-dev``
(``.ci/run`` does). Where Go is not installed the tests that need it are skipped, saying so; where Go
is installed, a program that does not build fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GO_SOURCES = Path(__file__).parent / "go"
GOPATH = Path("/usr/share/gocode")  # where Debian's golang-*-dev packages put their sources
DEBIAN_PACKAGES = "golang-go golang-etcd-server-dev golang-google-protobuf-dev golang-google-grpc-dev"


def go_env() -> dict[str, str]:
    return os.environ | {"GO111MODULE": "off", "GOPATH": str(GOPATH), "GOFLAGS": "", "GOPROXY": "off"}


def build(program: str, into: Path) -> Path:
    """``tests/go/<program>`` built into ``into``; skips the test where Go or Debian's Go packages are missing."""
    return build_dir(GO_SOURCES / program, into)


def build_dir(source: Path, into: Path) -> Path:
    """The Go program in ``source`` built into ``into`` (GOPATH mode, Debian's packages); skips as ``build``."""
    go = shutil.which("go")
    if go is None:
        pytest.skip(f"Go is not installed (apt-get install {DEBIAN_PACKAGES})")
    if not (GOPATH / "src" / "go.etcd.io" / "etcd" / "clientv3").is_dir():
        pytest.skip(f"Debian's Go packages are not installed (apt-get install {DEBIAN_PACKAGES})")
    binary = into / source.name
    done = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=source,
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"go build of {source} failed:\n{done.stderr}"
    return binary
