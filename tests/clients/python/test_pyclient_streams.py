"""The plain stream attributes through the real server: a server stream (DownloadReport)
retried when its answer is lost before the first message, and a raw BatchRecharge."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from gencharge_client import AsyncClient, StaticTokenCredentials
from gencharge_client.v1 import admin_service_pb2 as admin_pb
from gencharge_client.v1 import recharge_service_pb2 as recharge_pb

from tests.clients.h2proxy import H2Proxy
from tests.clients.python.support import funded_user, partner
from tests.helpers.auth import create_admin
from tests.helpers.money import balance, make_plan


async def test_a_read_only_server_stream_is_retried_before_its_first_message(
    proxied: AsyncClient, proxy: H2Proxy, channel: Any, resources: Any
) -> None:
    admin = await create_admin(channel, resources)
    staff = proxied.with_credentials(StaticTokenCredentials(admin.access_token))
    report = await staff.admin.generate_report(
        admin_pb.GenerateReportRequest(report_type_id=2, format=admin_pb.REPORT_FORMAT_CSV)
    )
    proxy.arm(1)  # the stream's response headers: nothing received yet
    chunks = [
        chunk
        async for chunk in staff.admin.download_report(
            admin_pb.DownloadReportRequest(report_id=report.report_id)
        )
    ]
    assert proxy.dropped == 1
    data = b"".join(chunk.data for chunk in chunks)
    assert chunks[0].size_bytes == len(data) > 0
    assert chunks[0].sha256 == hashlib.sha256(data).hexdigest() == report.sha256


async def test_the_raw_bidi_stream_answers_in_order(
    client: AsyncClient, channel: Any, resources: Any
) -> None:
    service = await partner(client, channel, resources)
    user = await funded_user(channel, resources, "30.00")
    plan_id = await make_plan(resources, price="10.00")
    requests = [
        recharge_pb.BatchRechargeRequest(
            request_id=str(uuid.uuid4()), user_id=user.user_id, plan_id=plan_id
        )
        for _ in range(2)
    ]
    answers = [answer async for answer in service.recharge.batch_recharge(requests)]
    assert [a.request_id for a in answers] == [r.request_id for r in requests]
    assert [a.WhichOneof("result") for a in answers] == ["recharge", "recharge"]
    assert str(await balance(resources, user.user_id)) == "10.00"
