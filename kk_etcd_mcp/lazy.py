"""A package's exported names, each imported from its module on first use (PEP 562 ``__getattr__``).

``from kk_etcd_mcp.etcd import parse_endpoint`` then loads the endpoint parser and not etcd3aio and grpc,
so ``kk-etcd-mcp --version`` and ``--help`` start without them. The package lists the same names
under ``if TYPE_CHECKING:`` for type checkers, and in ``__all__``; tests/test_public_api.py resolves each.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, modules: Mapping[str, Sequence[str]]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``modules`` maps a relative module (``".client"``) to its names."""
    module_of = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_of[name], package), name)
        setattr(sys.modules[package], name, value)  # the next lookup is a plain attribute
        return value

    return __getattr__
