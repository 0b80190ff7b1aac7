"""docs/clients/python.md is run, every code block, against the real server.

The page's Python blocks run in order in one namespace, as one script would, in a
worker thread (the test server lives on the test's event loop). Each block starting
with ``# Settings`` is the reader's to change: after it runs, the test checks it set
exactly the names this test fills and puts the test server's address, accounts and
plans there. The ``sh`` block (the install command) is run by test_pyclient_install.py
in a fresh virtual environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from decimal import Decimal
from typing import Any

from server.auth.scopes import RECHARGES_WRITE
from tests.clients.python.support import DOC, debits, doc_blocks, funded_user
from tests.helpers.auth import PASSWORD, create_service
from tests.helpers.money import assert_ledger_balances, balance, make_plan

SETTINGS_MARK = "# Settings"
INSTALL_COMMAND = "pip install ./clients/python"
BATCH_CUSTOMERS = 20
BATCH_ITEMS = 10_000


def names_set_by(block: str) -> set[str]:
    return set(re.findall(r"^([A-Z_]+) = ", block, re.MULTILINE))


def run_page(settings: list[dict[str, Any]]) -> str:
    """Run every Python block of the page; the n-th settings block gets ``settings[n]``.
    Returns what the page printed (stdout and stderr)."""
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    output = io.StringIO()
    filled = iter(settings)
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        for number, block in enumerate(body for _, body in doc_blocks("python")):
            exec(compile(block, f"{DOC.name} block {number + 1}", "exec"), namespace)  # noqa: S102
            if block.startswith(SETTINGS_MARK):
                values = next(filled)
                assert names_set_by(block) == set(values), block
                namespace.update(values)
    assert next(filled, None) is None, "a settings block is missing from the page"
    return output.getvalue()


def test_the_install_command_is_the_one_the_install_test_runs() -> None:
    assert [body.strip() for _, body in doc_blocks("sh")] == [INSTALL_COMMAND]
    assert {lang for lang, _ in doc_blocks()} == {"sh", "python"}  # nothing else to run


async def test_every_example_runs_against_the_server(
    address: str, channel: Any, resources: Any
) -> None:
    asha = await funded_user(channel, resources, "100.00")
    plan_id = await make_plan(resources, price="10.00", name="Docs 10")
    expensive = await make_plan(resources, price="500.00", name="Docs 500")
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    customers = [
        (await funded_user(channel, resources, "500.00")).user_id for _ in range(BATCH_CUSTOMERS)
    ]
    cheap = await make_plan(resources, price="1.00", name="Docs 1")
    phone = "9999900123"

    printed = await asyncio.to_thread(
        run_page,
        [
            {
                "ADDRESS": address,
                "EMAIL": asha.email,
                "PASSWORD": PASSWORD,
                "PHONE": phone,
                "PLAN_ID": plan_id,
                "EXPENSIVE_PLAN_ID": expensive,
            },
            {
                "ADDRESS": address,
                "CLIENT_ID": service.email,
                "CLIENT_SECRET": service.password,
                "CUSTOMER_IDS": customers,
                "PLAN_ID": cheap,
            },
        ],
    )

    lines = printed.splitlines()
    assert "Test User: balance Rs 100.00" in lines
    assert "Docs 10: pay Rs 10.00" in lines
    (recharged,) = [line for line in lines if line.startswith(f"recharged {phone}")]
    assert "cannot buy: INSUFFICIENT_FUNDS" in lines
    assert "InsufficientFunds: FAILED_PRECONDITION INSUFFICIENT_FUNDS" in lines
    assert "2 transactions" in lines  # the funding credit and the one debit
    assert "balance 90.00" in lines
    assert f"{BATCH_ITEMS}/{BATCH_ITEMS} ok {BATCH_ITEMS} failed 0" in printed
    assert lines[-1] == f"{{'recharged': {BATCH_ITEMS}}}"

    # The quote-then-recharge example debited once, though it sent its request twice.
    (debit,) = await debits(resources, asha.user_id)
    assert recharged.endswith(f"transaction {debit}")
    assert await balance(resources, asha.user_id) == Decimal("90.00")
    for customer in customers:
        assert len(await debits(resources, customer)) == BATCH_ITEMS // BATCH_CUSTOMERS
        assert await balance(resources, customer) == Decimal("0.00")
    await assert_ledger_balances(resources)
