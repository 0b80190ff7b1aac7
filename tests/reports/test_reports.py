"""AdminService reports through the real server: every type in every format, checked
against the databases; the download stream; RBAC; errors; listing; concurrency."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from gencharge.v1 import admin_service_pb2 as pb
from server.ops.seed.reference import REPORT_TYPES as SEEDED_TYPES
from server.reports.catalog import BY_ID, REPORT_TYPES
from tests.helpers.auth import create_admin, create_service, register_user
from tests.helpers.clock import eventually
from tests.helpers.rpc import details_of
from tests.reports.helpers import (
    admin_stub,
    bounds,
    csv_rows,
    download,
    generate,
    pdf_text,
    read_xlsx,
    seed_data,
    stored_path,
    window,
)

FORMATS = (pb.REPORT_FORMAT_CSV, pb.REPORT_FORMAT_EXCEL, pb.REPORT_FORMAT_PDF)


async def _scalar(resources: Any, sql: str, **params: Any) -> Any:
    async with resources.db.read_only() as conn:
        return (await conn.execute(text(sql), params)).one()


async def expected(resources: Any, name: str, params: dict[str, str]) -> tuple[int, dict[str, str]]:
    """Row count and totals of a report, computed here, independently of server/reports."""
    start, end = bounds(params)
    r = {"s": start, "e": end}
    money = lambda v: f"{Decimal(v or 0):.2f}"  # noqa: E731
    mongo = resources.mongo_db
    if name == "transactions":
        n, amount = await _scalar(
            resources,
            "SELECT count(*), sum(amount) FROM transactions t JOIN users u USING (user_id)"
            " WHERE t.created_at >= :s AND t.created_at < :e",
            **r,
        )
        return n, {"amount": money(amount)}
    if name == "recharges":
        n, amount, discount, cashback = await _scalar(
            resources,
            "SELECT count(*), sum(t.amount), sum(r.discount), sum(r.cashback) FROM recharges r"
            " JOIN transactions t USING (txn_id) WHERE t.created_at >= :s AND t.created_at < :e",
            **r,
        )
        return n, {
            "amount": money(amount),
            "discount": money(discount),
            "cashback": money(cashback),
        }
    if name == "users":
        n, wallets = await _scalar(
            resources,
            "SELECT count(*), sum(wallet_balance) FROM users"
            " WHERE created_at >= :s AND created_at < :e",
            **r,
        )
        return n, {"wallet_balance": money(wallets)}
    if name in ("revenue", "plans"):
        days, n, amount = await _scalar(
            resources,
            "SELECT count(DISTINCT (created_at AT TIME ZONE 'UTC')::date), count(*), sum(amount)"
            " FROM transactions WHERE status = 'success' AND txn_type = 'debit'"
            " AND source IN ('recharge', 'autopay') AND created_at >= :s AND created_at < :e",
            **r,
        )
        if name == "plans":
            (plans,) = await _scalar(resources, "SELECT count(*) FROM plans")
            return plans, {"recharge_count": str(n), "recharge_amount": money(amount)}
        topups, topup_amount = await _scalar(
            resources,
            "SELECT count(*), sum(amount) FROM transactions WHERE status = 'success'"
            " AND source = 'wallet_topup' AND created_at >= :s AND created_at < :e",
            **r,
        )
        return days, {
            "recharge_count": str(n),
            "recharge_amount": money(amount),
            "topup_count": str(topups),
            "topup_amount": money(topup_amount),
        }
    if name == "offers":
        (offers,) = await _scalar(resources, "SELECT count(*) FROM offers")
        uses, amount = await _scalar(
            resources,
            "SELECT count(*), sum(amount) FROM transactions WHERE status = 'success'"
            " AND offer_id IS NOT NULL AND created_at >= :s AND created_at < :e",
            **r,
        )
        return offers, {"uses": str(uses), "amount": money(amount)}
    if name == "referrals":
        n, amount = await _scalar(
            resources,
            "SELECT count(*), sum(reward_amount) FROM referralrewards"
            " WHERE created_at >= :s AND created_at < :e",
            **r,
        )
        return n, {"reward_amount": money(amount)}
    if name == "active_plans":
        (n,) = await _scalar(
            resources,
            "SELECT count(*) FROM currentactiveplans c JOIN users USING (user_id)"
            " JOIN plans USING (plan_id) WHERE c.status = 'active'",
        )
        return n, {}
    if name == "user_permissions":
        (n,) = await _scalar(
            resources, "SELECT count(*) FROM users u JOIN rolepermissions rp USING (role_id)"
        )
        return n, {}
    if name == "user_activity":
        within = {"created_at": {"$gte": start, "$lt": end}}
        documents = await mongo["AuditLog"].find(within).to_list()
        pairs = {(d["user_id"], d["action_type"]) for d in documents}
        return len(pairs), {"total_actions": str(len(documents))}
    if name == "content_usage":
        documents = await mongo["Content"].find({}).to_list()
        types = {d["content_type_id"] for d in documents}
        return len(types), {"total_items": str(len(documents))}
    assert name == "backup_activity"
    within = {"created_at": {"$gte": start, "$lt": end}}
    n = await mongo["BackupRestoreLogs"].count_documents(within)
    return n, {}


def test_report_types_match_the_seed() -> None:
    assert [(t.report_type_id, t.name) for t in REPORT_TYPES] == list(SEEDED_TYPES)


async def test_every_report_type_in_every_format(channel, resources) -> None:
    await seed_data(channel, resources)
    admin = await create_admin(channel, resources)
    params = window()
    for report_type in REPORT_TYPES:
        name = report_type.name
        parameters = params if report_type.ranged else {}
        rows_expected, totals_expected = await expected(resources, name, params)
        assert rows_expected > 0, f"the data set has no rows for {name}"
        csv_data: list[list[str]] = []
        for fmt in FORMATS:
            report = await generate(channel, admin, report_type.report_type_id, fmt, parameters)
            where = f"{name} in {pb.ReportFormat.Name(fmt)}"
            assert report.report_type_name == name and report.format == fmt, where
            assert report.row_count == rows_expected, where
            totals = dict(report.details["totals"])
            assert totals == totals_expected, where
            data = await download(channel, admin, report.report_id)
            assert stored_path(report).read_bytes() == data, where
            assert report.sha256 == hashlib.sha256(data).hexdigest() == report.details["sha256"]
            assert report.size_bytes == len(data)
            if fmt == pb.REPORT_FORMAT_CSV:
                csv_data = csv_rows(data, report_type)
                assert len(csv_data) == rows_expected, where
                for key, total in totals_expected.items():
                    index = report_type.keys.index(key)
                    column_sum = sum(Decimal(row[index] or 0) for row in csv_data)
                    assert column_sum == Decimal(total), where
            elif fmt == pb.REPORT_FORMAT_EXCEL:
                book = read_xlsx(data, report_type)
                assert book.rows == csv_data, where
                assert book.totals == totals_expected, where
                if report_type.chart is not None:
                    assert book.charts == 1, where
                    assert book.chart_series, where
                    assert sum(v for _, v in book.chart_series) == pytest.approx(
                        _series_total(report_type, csv_data)
                    ), where
                else:
                    assert book.charts == 0, where
            else:
                content = pdf_text(data)
                assert report_type.title in content, where
                assert f"Rows: {rows_expected}" in content, where
                assert "Total" in content, where
                for total in totals_expected.values():
                    assert total in content, where
                for row in csv_data:
                    assert row[0][:8] in content, where
                if report_type.chart is not None:
                    assert f"Chart: {report_type.chart.title}" in content, where
                else:
                    assert "Chart:" not in content, where


def _series_total(report_type: Any, rows: list[list[str]]) -> float:
    chart = report_type.chart
    if chart.value is None:
        return float(len(rows))
    index = report_type.keys.index(chart.value)
    return float(sum(Decimal(row[index]) for row in rows))


async def test_report_is_logged_audited_and_listed_newest_first(channel, resources) -> None:
    admin = await create_admin(channel, resources)
    made = [
        await generate(channel, admin, 2, pb.REPORT_FORMAT_CSV),
        await generate(channel, admin, 10, pb.REPORT_FORMAT_EXCEL),
        await generate(channel, admin, 2, pb.REPORT_FORMAT_PDF),
    ]
    document = await resources.mongo_db["ReportsLogs"].find_one({"report_id": made[0].report_id})
    assert document["report_type_id"] == 2 and document["format"] == "csv"
    assert document["generated_by"] == made[0].generated_by > 0
    assert document["details"]["sha256"] == made[0].sha256
    # The parameters default to the last 30 days, up to today.
    today = datetime.now(UTC).date()
    assert made[0].details["parameters"] == {
        "from": (today - timedelta(days=29)).isoformat(),
        "to": today.isoformat(),
    }
    # Each generation's event reaches AuditLog through the relay (read it there only:
    # reading the outbox, then AuditLog, counts an event the relay ships in between twice).
    audit_log = resources.mongo_db["AuditLog"]

    async def shipped() -> list[dict[str, Any]]:
        found = await audit_log.find({"rpc": {"$regex": "GenerateReport$"}}).to_list()
        return found if len(found) >= 3 else []

    events = await eventually(shipped)
    events.sort(key=lambda e: e["details"]["report_id"])
    assert len(events) == 3
    for event, report in zip(events, made, strict=True):
        assert event["table_name"] == "ReportsLogs" and event["action_type"] == "INSERT"
        assert event["details"]["report_id"] == report.report_id

    stub = admin_stub(channel)
    first = await stub.ListReports(pb.ListReportsRequest(page_size=2), metadata=admin.metadata)
    assert [r.report_id for r in first.reports] == [made[2].report_id, made[1].report_id]
    assert first.next_page_token
    second = await stub.ListReports(
        pb.ListReportsRequest(page_size=2, page_token=first.next_page_token),
        metadata=admin.metadata,
    )
    assert [r.report_id for r in second.reports] == [made[0].report_id]
    assert second.next_page_token == ""
    only = await stub.ListReports(pb.ListReportsRequest(report_type_id=2), metadata=admin.metadata)
    assert [r.report_id for r in only.reports] == [made[2].report_id, made[0].report_id]
    assert only.reports[0].sha256 == made[2].sha256
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListReports(
            pb.ListReportsRequest(report_type_id=10, page_token=first.next_page_token),
            metadata=admin.metadata,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_first_reports_generated_at_once_get_distinct_ids(channel, resources) -> None:
    """The first generations of a new database, side by side, each get their own
    report id (the counter exists from migration on: none races to create it)."""
    admin = await create_admin(channel, resources)
    limit = resources.settings.reports_max_concurrent
    made = await asyncio.gather(
        *(generate(channel, admin, 2, pb.REPORT_FORMAT_CSV) for _ in range(limit))
    )
    assert sorted(r.report_id for r in made) == list(range(1, limit + 1))


async def test_access_per_role(channel, resources) -> None:
    admin = await create_admin(channel, resources)
    support = await create_admin(channel, resources, role_name="Support")
    customer = await register_user(channel)
    service = await create_service(channel, resources, scopes=("recharges.read",))
    report = await generate(channel, admin, 11, pb.REPORT_FORMAT_CSV)
    stub = admin_stub(channel)
    # Support reads reports (DDS 13: "limited access to user data and reports")...
    listed = await stub.ListReports(pb.ListReportsRequest(), metadata=support.metadata)
    assert [r.report_id for r in listed.reports] == [report.report_id]
    assert await download(channel, support, report.report_id)
    # ...but does not generate them (Reports write is the Admin role's).
    for actor, code in (
        (support, grpc.StatusCode.PERMISSION_DENIED),
        (customer, grpc.StatusCode.PERMISSION_DENIED),
        (service, grpc.StatusCode.PERMISSION_DENIED),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await generate(channel, actor, 11, pb.REPORT_FORMAT_CSV)
        assert info.value.code() == code, actor.kind
    for actor in (customer, service):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListReports(pb.ListReportsRequest(), metadata=actor.metadata)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await download(channel, actor, report.report_id)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListReports(pb.ListReportsRequest())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await generate(channel, customer.__class__("anonymous", ""), 11, pb.REPORT_FORMAT_CSV)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("type_id", "fmt", "parameters", "fields"),
    [
        (99, pb.REPORT_FORMAT_CSV, {}, ["report_type_id"]),
        (0, pb.REPORT_FORMAT_CSV, {}, ["report_type_id"]),
        (2, pb.REPORT_FORMAT_UNSPECIFIED, {}, ["format"]),
        (2, 42, {}, ["format"]),
        (2, pb.REPORT_FORMAT_CSV, {"colour": "red"}, ["parameters.colour"]),
        (2, pb.REPORT_FORMAT_CSV, {"from": "2025-13-01"}, ["parameters.from"]),
        (2, pb.REPORT_FORMAT_CSV, {"from": 20250101}, ["parameters.from"]),
        (2, pb.REPORT_FORMAT_CSV, {"to": "1999-12-31"}, ["parameters.to"]),
        (2, pb.REPORT_FORMAT_CSV, {"from": "2025-02-01", "to": "2025-01-01"}, ["parameters.from"]),
        (2, pb.REPORT_FORMAT_CSV, {"from": "2024-01-01", "to": "2025-01-02"}, ["parameters.to"]),
        (7, pb.REPORT_FORMAT_PDF, {"from": "2025-01-01"}, ["parameters.from"]),
        (99, 0, {"x": 1}, ["report_type_id", "format", "parameters.x"]),
    ],
)
async def test_bad_requests(channel, resources, type_id, fmt, parameters, fields) -> None:
    admin = await create_admin(channel, resources)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await generate(channel, admin, type_id, fmt, parameters)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(details_of(info.value).field_violations) == fields
    # Nothing written: no log, no file, no id taken.
    assert await resources.mongo_db["ReportsLogs"].count_documents({}) == 0
    assert not [p for p in resources.settings.report_storage_dir.glob("report-*")]


async def test_download_errors(channel, resources) -> None:
    admin = await create_admin(channel, resources)
    for report_id, code in ((0, "INVALID_ARGUMENT"), (12345, "NOT_FOUND")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await download(channel, admin, report_id)
        assert info.value.code().name == code
    report = await generate(channel, admin, 12, pb.REPORT_FORMAT_CSV)
    stored_path(report).unlink()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await download(channel, admin, report.report_id)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert details_of(info.value).reason == "REPORT_FILE_MISSING"


async def test_too_many_reports_at_once(channel, resources) -> None:
    """Two generations blocked on a table lock hold both slots; the third is refused."""
    admin = await create_admin(channel, resources)
    limit = resources.settings.reports_max_concurrent
    assert limit == 2
    async with resources.db.engine.connect() as locker:
        await locker.execute(text("LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE"))
        running = [
            asyncio.create_task(generate(channel, admin, 2, pb.REPORT_FORMAT_CSV))
            for _ in range(limit)
        ]

        async def both_waiting() -> bool:
            async with resources.db.read_only() as conn:
                waiting = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND query LIKE '%transaction_summary_v%'"
                        )
                    )
                ).scalar_one()
            return bool(waiting == limit)

        assert await eventually(both_waiting)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await generate(channel, admin, 2, pb.REPORT_FORMAT_CSV)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details_of(info.value).reason == "REPORTS_BUSY"
        await locker.rollback()
    done = await asyncio.gather(*running)
    assert len({r.report_id for r in done}) == limit
    # The slots are free again.
    assert await generate(channel, admin, 2, pb.REPORT_FORMAT_CSV)


async def test_a_pdf_holds_a_bounded_number_of_rows(channel, resources, monkeypatch) -> None:
    """A PDF keeps its pages in memory until it is saved, so its rows are capped
    (``reports_pdf_max_rows``): refused before writing when counted in advance, and while
    writing when the rows are only known then (the MongoDB reports). CSV is not capped."""
    await seed_data(channel, resources)
    admin = await create_admin(channel, resources)
    by_name = {t.name: t.report_type_id for t in REPORT_TYPES}
    users = await generate(channel, admin, by_name["users"], pb.REPORT_FORMAT_CSV)
    activity = await generate(
        channel, admin, by_name["user_activity"], pb.REPORT_FORMAT_CSV, window()
    )
    assert users.row_count >= 2 and activity.row_count >= 2
    logged = await resources.mongo_db["ReportsLogs"].count_documents({})
    stored = sorted(resources.settings.report_storage_dir.glob("report-*"))

    for name, rows, parameters in (
        ("users", users.row_count, {}),
        ("user_activity", activity.row_count, window()),
    ):
        monkeypatch.setattr(resources.settings, "reports_pdf_max_rows", rows - 1)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await generate(channel, admin, by_name[name], pb.REPORT_FORMAT_PDF, parameters)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, name
        refusal = details_of(info.value)
        assert refusal.reason == "REPORT_TOO_LARGE_FOR_PDF"
        assert refusal.metadata["max_rows"] == str(rows - 1)
        # Nothing kept: no log, no file, no scratch file.
        assert await resources.mongo_db["ReportsLogs"].count_documents({}) == logged
        assert sorted(resources.settings.report_storage_dir.glob("report-*")) == stored
        assert not list((resources.settings.report_storage_dir / ".scratch").glob("*"))
        # At the limit it is written.
        monkeypatch.setattr(resources.settings, "reports_pdf_max_rows", rows)
        pdf = await generate(channel, admin, by_name[name], pb.REPORT_FORMAT_PDF, parameters)
        assert pdf.row_count == rows
        logged += 1
        stored = sorted(resources.settings.report_storage_dir.glob("report-*"))


def test_catalog_is_consistent() -> None:
    for report_type in REPORT_TYPES:
        assert BY_ID[report_type.report_type_id] is report_type
        if report_type.chart:
            assert report_type.chart.day in report_type.keys
            assert report_type.chart.value in (None, *report_type.keys)
