"""The application: what runs the core packages as the ``kk-etcd-mcp`` commands.

- ``runner``: the composition root of ``kk-etcd-mcp serve``: the embedded etcd, the etcd client, the
  registry and its hub, the MCP server (``mcp_server.app.build_server``) and its transport;
- ``console``: the views only the command line shows (``kk-etcd-mcp hub`` and ``services``);
- ``signals``: SIGINT/SIGTERM stop every long-running command the same way.

Layers (``tests/test_layers.py`` holds the imports to them): this package and the command line
(``cli.py``) are on top and may import anything; ``mcp_server`` translates the core packages into MCP
and imports none of this; the core packages (``config_center``, ``registry``, ``access``, ``cluster``,
``audit``) import neither; ``etcd`` at the bottom imports none of them.

Nothing is imported here: ``kk-etcd-mcp hub`` need not load the MCP server to start.
"""
