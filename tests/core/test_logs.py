"""Logs carry no secrets or personal data, even when a statement fails: a database error
is logged without its bound parameters (e-mails, phone numbers, password hashes), and a
MongoDB write error without the values or documents it quotes."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from gencharge.v1 import auth_service_pb2 as auth_pb
from gencharge.v1 import auth_service_pb2_grpc, common_pb2
from server.core.logs import JsonFormatter, TextFormatter
from tests.helpers.auth import PASSWORD, next_phone

_FAIL_USER_INSERTS = (
    """CREATE FUNCTION test_fail_user_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'users are not writable in this test' USING ERRCODE = 'XX000';
    END $$""",
    """CREATE TRIGGER test_fail_user_insert BEFORE INSERT ON users
        FOR EACH ROW EXECUTE FUNCTION test_fail_user_insert()""",
)


async def test_a_failing_statement_logs_no_bound_parameters(
    channel: grpc.aio.Channel, resources: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A database-side failure for the one statement that carries all of it.
    async with resources.db.transaction() as conn:
        for statement in _FAIL_USER_INSERTS:
            await conn.execute(text(statement))
    email = f"private-{uuid.uuid4().hex[:8]}@example.com"
    phone = next_phone()
    caplog.set_level(logging.INFO)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth_service_pb2_grpc.AuthServiceStub(channel).Register(
            auth_pb.RegisterRequest(
                name="Private Person",
                email=email,
                phone_number=phone,
                password=PASSWORD,
                user_type=common_pb2.USER_TYPE_PREPAID,
            )
        )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    failures = [r for r in caplog.records if r.exc_info]
    assert failures, "the failed statement was not logged"
    lines = [f.format(r) for r in caplog.records for f in (JsonFormatter(), TextFormatter())]
    logged = "\n".join(lines)
    assert "users are not writable in this test" in logged  # the error itself is there
    for private in (email, phone, phone[-10:], "$argon2", PASSWORD, "Private Person"):
        assert private not in logged, [line for line in logged.splitlines() if private in line][:3]


async def test_a_failing_mongo_write_logs_no_values(
    resources: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """MongoDB write errors quote the values they refused (a duplicate key repeats the
    e-mail; a bulk write error whole documents): the logs keep only codes and index."""
    from pymongo.errors import BulkWriteError, DuplicateKeyError

    collection = resources.mongo_db["LogPrivacyTest"]
    await collection.create_index("email", unique=True, name="email_unique")
    email = f"private-{uuid.uuid4().hex[:8]}@example.com"
    phone = next_phone()
    name = f"Private Person {uuid.uuid4().hex[:6]}"
    await collection.insert_one({"email": email, "phone": phone})
    log = logging.getLogger("tests.logs")
    caplog.set_level(logging.INFO)
    with pytest.raises(DuplicateKeyError) as duplicate:
        await collection.insert_one({"email": email, "phone": phone})
    assert email in str(duplicate.value)  # the driver's message has it; the log must not
    log.error("insert failed", exc_info=duplicate.value)
    with pytest.raises(BulkWriteError) as bulk:
        await collection.insert_many([{"email": email, "phone": phone, "name": name}])
    log.error("bulk insert failed", exc_info=bulk.value)
    try:
        try:
            raise bulk.value
        except BulkWriteError as inner:
            raise RuntimeError("shipping failed") from inner
    except RuntimeError as outer:
        log.error("chained", exc_info=outer)
    lines = [f.format(r) for r in caplog.records for f in (JsonFormatter(), TextFormatter())]
    logged = "\n".join(lines)
    assert "DuplicateKeyError: code 11000" in logged
    assert "BulkWriteError: bulk write failed: 1 write error(s), codes 11000" in logged
    assert "RuntimeError: shipping failed" in logged
    for private in (email, phone, phone[-10:], name):
        assert private not in logged, private
