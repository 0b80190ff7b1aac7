"""The customer-account RPCs of AdminService: RPC methods only."""

from __future__ import annotations

from typing import Any

import grpc

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import identity_pb2
from server.admin.users import convert, domain, flows
from server.auth.security import Security
from server.core.db import Database
from server.core.resources import Resources

Context = grpc.aio.ServicerContext[Any, Any]


class UserRpcs:
    """ListUsers, GetUser, BlockUser, UnblockUser, ArchiveUser, RevokeUserSessions,
    ExportUserData, EraseUserData (a part of the AdminService servicer, composed in
    server/rpc/services.py)."""

    _db: Database
    _resources: Resources
    _security: Security

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: Context
    ) -> pb.ListUsersResponse:
        user_filter = convert.user_filter_of(request)
        async with self._db.read_only() as conn:
            users, token = await domain.list_users(
                user_filter,
                page_size=request.page_size,
                page_token=request.page_token,
                conn=conn,
            )
        return pb.ListUsersResponse(
            users=[convert.user_message(domain.UserView(u)) for u in users],
            next_page_token=token,
        )

    async def GetUser(self, request: pb.GetUserRequest, context: Context) -> identity_pb2.User:
        async with self._db.read_only() as conn:
            view = await domain.get_user(request.user_id, conn=conn)
        return convert.user_message(view)

    async def BlockUser(self, request: pb.BlockUserRequest, context: Context) -> identity_pb2.User:
        view = await flows.block(
            self._db, request.user_id, request.reason, sessions=self._security.authenticator
        )
        return convert.user_message(view)

    async def UnblockUser(
        self, request: pb.UnblockUserRequest, context: Context
    ) -> identity_pb2.User:
        async with self._db.transaction() as conn:
            view = await domain.unblock(request.user_id, request.reason, conn=conn)
        return convert.user_message(view)

    async def ArchiveUser(
        self, request: pb.ArchiveUserRequest, context: Context
    ) -> pb.ArchiveUserResponse:
        view = await flows.archive(
            self._db, request.user_id, request.reason, sessions=self._security.authenticator
        )
        return pb.ArchiveUserResponse(user=convert.user_message(view))

    async def RevokeUserSessions(
        self, request: pb.RevokeUserSessionsRequest, context: Context
    ) -> pb.RevokeUserSessionsResponse:
        count = await flows.revoke_sessions(
            self._db, request.user_id, sessions=self._security.authenticator
        )
        return pb.RevokeUserSessionsResponse(revoked_count=count)

    async def ExportUserData(
        self, request: pb.ExportUserDataRequest, context: Context
    ) -> pb.ExportUserDataResponse:
        document = await flows.export(
            self._db, self._resources.mongo_db, request.user_id, request.reason
        )
        return convert.export_response(document, flows.export_bytes(document))

    async def EraseUserData(
        self, request: pb.EraseUserDataRequest, context: Context
    ) -> pb.EraseUserDataResponse:
        done = await flows.erase(
            self._db,
            self._resources.mongo_db,
            request.user_id,
            request.reason,
            sessions=self._security.authenticator,
        )
        return pb.EraseUserDataResponse(
            user=convert.user_message(done.view), sessions_ended=len(done.sessions)
        )
