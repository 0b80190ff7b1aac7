"""Both SDKs decide retries, request ids and pagination from one set of rules
(tools/contract_rpcs.py): their generated tables must agree with it, RPC by RPC."""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import contract_rpcs  # noqa: E402
import generate  # noqa: E402
from gencharge_client.v1.methods import METHODS  # noqa: E402

TS_METHODS = REPO_ROOT / "clients" / "typescript" / "src" / "gen" / "methods.ts"
_TS_ROW = re.compile(r'^  "(/[^"]+)": (\{.*\}),$', re.MULTILINE)


@pytest.fixture(scope="module")
def facts() -> dict[str, contract_rpcs.RpcFacts]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contract.pb"
        generate.write_descriptor_set(path)
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_set.file:
        pool.Add(file)
    rpcs = contract_rpcs.ContractRpcs(pool)
    table = {}
    for file in descriptor_set.file:
        if file.package != contract_rpcs.PACKAGE:
            continue
        for service in file.service:
            for method in service.method:
                one = rpcs.of(f"{file.package}.{service.name}", method)
                table[one.path] = one
    return table


def test_the_rules_on_known_rpcs(facts: dict[str, contract_rpcs.RpcFacts]) -> None:
    quote = facts["/gencharge.v1.RechargeService/QuoteRecharge"]
    assert quote.read_only and not quote.request_id  # idempotency_level NO_SIDE_EFFECTS
    recharge = facts["/gencharge.v1.RechargeService/Recharge"]
    assert recharge.request_id and not recharge.read_only
    batch = facts["/gencharge.v1.RechargeService/BatchRecharge"]
    assert batch.client_streaming and batch.server_streaming and batch.page is None
    plans = facts["/gencharge.v1.PlanService/ListPlans"]
    assert plans.read_only and plans.page == contract_rpcs.Page("plans", "gencharge.v1.Plan")
    block = facts["/gencharge.v1.AdminService/BlockUser"]
    assert not block.read_only and not block.request_id
    assert facts["/gencharge.v1.AdminService/ListUsers"].action == "ACTION_READ"
    assert len(facts) == len(METHODS)


def test_python_sdk_table_follows_the_rules(facts: dict[str, contract_rpcs.RpcFacts]) -> None:
    assert set(METHODS) == set(facts)
    for path, one in facts.items():
        row = METHODS[path]
        expected = (one.read_only, one.request_id, one.page.items_field if one.page else None)
        assert (row.read_only, row.request_id, row.items_field) == expected, path
        assert row.audience == one.audience, path


def test_typescript_sdk_table_follows_the_rules(facts: dict[str, contract_rpcs.RpcFacts]) -> None:
    rows = {path: json.loads(row) for path, row in _TS_ROW.findall(TS_METHODS.read_text())}
    assert set(rows) == set(facts)
    for path, one in facts.items():
        row = rows[path]
        expected = (
            one.read_only,
            "request_id" if one.request_id else None,
            {"itemsField": one.page.items_field} if one.page else None,
        )
        assert (row["readOnly"], row["requestIdField"], row["pagination"]) == expected, path
        assert row["serviceScope"] == one.service_scope, path
