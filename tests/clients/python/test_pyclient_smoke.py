from __future__ import annotations

from gencharge_client import AsyncClient
from gencharge_client.v1 import auth_service_pb2 as auth_pb

from tests.helpers.auth import PASSWORD, register_user


async def test_smoke(channel, grpc_server) -> None:
    user = await register_user(channel)
    async with AsyncClient(f"127.0.0.1:{grpc_server.port}") as client:
        session = await client.login(email=user.email, password=PASSWORD)
        me = client.with_credentials(session)
        principal = await me.auth.get_me()
        assert principal.user.user_id == user.user_id
        sessions = [
            s async for s in me.auth.list_sessions.items(auth_pb.ListSessionsRequest(page_size=1))
        ]
        assert len(sessions) == 2
        print(repr(session), repr(me))
