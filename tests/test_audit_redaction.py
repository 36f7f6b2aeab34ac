"""What an audit line may repeat of a call: table-driven over every mutating tool, through the real client.

Each row calls one mutating tool with secrets wherever that tool takes content: kv values (plain text,
a JSON string, an object), import documents (as an object and as a JSON string), service metadata and
check settings, passwords. The audit file must not hold a secret, whatever the outcome. By default a
value appears only as its size and sha256 prefix; with ``audit_values = true`` values appear, but
passwords and secret-looking fields (also inside a JSON string or ``key=value`` text) still do not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import EtcdCtl
from mcp_helpers import served

from kk_etcd_mcp.audit import redact

pytestmark = pytest.mark.anyio

SECRET = "S3cr3t-Horse-Battery"  # must never reach an audit line
VISIBLE = "plain-visible-text"  # an ordinary value: logged only with audit_values = true


def rows(p: str, user: str, role: str) -> list[tuple[str, dict[str, Any]]]:
    """(tool, arguments): every mutating tool, most with secrets in what they carry."""
    document = {
        "format": "kk-etcd-export/v1",
        "prefix": f"{p}imp/",
        "revision": 1,
        "items": [
            {"key": f"{p}imp/a", "value": f"token={SECRET}"},
            {"key": f"{p}imp/b", "value": json.dumps({"db": {"pwd": SECRET}})},
        ],
    }
    return [
        ("kv_put", {"key": f"{p}plain", "value": VISIBLE}),
        ("kv_put", {"key": f"{p}conf", "value": f"db_pwd={SECRET}\nhost=db"}),
        ("kv_put", {"key": f"{p}json-string", "value": json.dumps({"pwd": SECRET, "host": "db"})}),
        ("kv_put", {"key": f"{p}json-object", "value": {"auth": SECRET, "host": "db"}, "format": "json"}),
        ("kv_put", {"key": f"{p}yaml", "value": f"password: {SECRET}\nhost: db\n", "format": "yaml"}),
        ("kv_put", {"key": f"{p}bad", "value": f'{{"pwd": "{SECRET}"', "format": "json"}),  # fails: invalid json
        ("kv_import", {"document": document, "dry_run": False}),
        ("kv_import", {"document": json.dumps(document), "dry_run": True}),
        ("kv_rollback", {"key": f"{p}conf", "to_revision": 1}),  # fails: the key did not exist then
        ("kv_delete", {"key": f"{p}imp/", "prefix": True}),
        (
            "service_register",
            {
                "name": "api",
                "addr": "127.0.0.1:1",
                "type": "http",
                "metadata": {"auth": SECRET, "version": "2"},
                "check": {"addr": f"http://user:{SECRET}@127.0.0.1:1/health"},
            },
        ),
        ("service_deregister", {"name": "api", "addr": "127.0.0.1:1"}),
        ("user_add", {"name": user, "password": SECRET}),
        ("user_change_password", {"name": user, "password": SECRET + "2"}),
        ("role_add", {"name": role}),
        ("role_grant_permission", {"role": role, "key": f"{p}x", "permission": "read"}),
        ("role_revoke_permission", {"role": role, "key": f"{p}x"}),
        ("user_grant_role", {"name": user, "role": role}),
        ("user_revoke_role", {"name": user, "role": role}),
        ("user_delete", {"name": user}),
        ("role_delete", {"name": role}),
        ("auth_enable", {}),  # fails: no root user in the test etcd
        ("auth_disable", {"dry_run": True}),
        ("cluster_snapshot", {"name": "audit-test"}),
    ]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize("audit_values", [False, True])
async def test_no_audit_line_of_any_mutating_tool_holds_a_secret(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, tmp_path: Path, audit_values: bool
) -> None:
    p = key_prefix
    tag = p.split("/")[1]
    user, role = f"u-{tag}", f"r-{tag}"
    audit = tmp_path / "audit.jsonl"
    table = rows(p, user, role)
    settings = {
        "audit_file": str(audit),
        "registry_prefix": f"{p}reg/",
        "backup_dir": str(tmp_path / "backups"),
        "hub": "false",
    }
    if audit_values:  # the default is false
        settings["audit_values"] = "true"
    try:
        async with served(etcd_endpoint, **settings) as client:
            mutating = {t.name for t in (await client.list_tools()).tools if not t.annotations.read_only_hint}
            assert {tool for tool, _ in table} == mutating, "every mutating tool has a row"
            for tool, arguments in table:
                await client.call_tool(tool, arguments)
    finally:
        if user in etcdctl("user", "list").stdout.split():
            etcdctl("user", "delete", user)
        if role in etcdctl("role", "list").stdout.split():
            etcdctl("role", "delete", role)

    text = audit.read_text()
    assert SECRET not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["tool"] for line in lines] == [tool for tool, _ in table], "one line per call"
    by_key = {line["arguments"].get("key"): line for line in lines if line["tool"] == "kv_put"}
    register = next(line for line in lines if line["tool"] == "service_register")["arguments"]
    assert register["name"] == "api" and register["addr"] == "127.0.0.1:1"  # what it acts on is shown
    plain = by_key[f"{p}plain"]["arguments"]["value"]
    if audit_values:
        assert plain == VISIBLE
        assert "host" in json.dumps(by_key[f"{p}json-string"]["arguments"]["value"])  # the rest of it is shown
        assert register["metadata"]["version"] == "2"
    else:
        assert plain == {"bytes": len(VISIBLE), "sha256": sha(VISIBLE)}
        assert VISIBLE not in text
        assert set(register["metadata"]) == {"bytes", "sha256"}
        assert set(lines[6]["arguments"]["document"]) == {"bytes", "sha256"}
    for line in lines:
        if line["tool"] in ("user_add", "user_change_password"):
            assert line["arguments"]["password"] == "***"


def test_redact_rule() -> None:
    arguments = {"key": "app/db", "value": "hunter2-and-more", "format": "text", "expected_revision": 3}
    assert redact(arguments) == {
        "key": "app/db",
        "value": {"bytes": 16, "sha256": sha("hunter2-and-more")},
        "format": "text",
        "expected_revision": 3,
    }
    # A value under a key named like a secret: not even its hash (a hash of a password can be guessed).
    assert redact({"key": "app/db/password", "value": "pw"})["value"] == "***"
    assert redact({"key": "app/db/password", "value": "pw"}, values=True)["value"] == "***"
    # Structured content: size and hash of its JSON; any argument this rule does not know is content.
    assert set(redact({"metadata": {"auth": "x"}})["metadata"]) == {"bytes", "sha256"}
    assert set(redact({"some_new_argument": "x"})["some_new_argument"]) == {"bytes", "sha256"}
    assert redact({"password": None, "value": None}) == {"password": None, "value": None}  # not given
    assert redact({"password": "p"}, values=True) == {"password": "***"}
    # audit_values = true: values shown, secrets inside them masked, long ones cut.
    shown = redact(
        {
            "value": json.dumps({"pwd": "x", "nested": {"apiKey": "y"}, "host": "db"}),
            "document": {"items": [{"key": "app/api_key", "value": "k"}, {"key": "app/host", "value": "h"}]},
            "check": {"addr": "http://me:pw@host/x"},
            "text": "user=me\npasswd = pw\nAuthorization: Bearer abc",
            "long": "v" * 500,
            "roles": [str(i) for i in range(30)],
        },
        values=True,
    )
    assert json.loads(shown["value"]) == {"pwd": "***", "nested": {"apiKey": "***"}, "host": "db"}
    assert shown["document"]["items"] == [{"key": "app/api_key", "value": "***"}, {"key": "app/host", "value": "h"}]
    assert shown["check"] == {"addr": "http://***@host/x"}
    assert shown["text"] == "user=me\npasswd = ***\nAuthorization: ***"
    assert shown["long"].endswith("... (500 characters)") and len(shown["long"]) < 250
    assert len(shown["roles"]) == 21 and shown["roles"][-1] == "... 10 more"
