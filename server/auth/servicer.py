"""AuthService: proto <-> identity flows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf import duration_pb2, empty_pb2
from sqlalchemy import Row

from gencharge.v1 import auth_service_pb2 as pb
from gencharge.v1 import auth_service_pb2_grpc, common_pb2, identity_pb2
from server.auth import domain
from server.auth.principal import principal, require_session_principal
from server.core import protoconv
from server.core.errors import InvalidArgument
from server.core.peers import client_peer

Context = grpc.aio.ServicerContext[Any, Any]
TOKEN_TYPE = "Bearer"  # noqa: S105 - the OAuth token type, not a secret

USER_STATUSES = {
    "active": identity_pb2.USER_STATUS_ACTIVE,
    "blocked": identity_pb2.USER_STATUS_BLOCKED,
}
ADMIN_STATUSES = {
    "active": identity_pb2.ADMIN_STATUS_ACTIVE,
    "blocked": identity_pb2.ADMIN_STATUS_BLOCKED,
    "deleted": identity_pb2.ADMIN_STATUS_DELETED,
}
SERVICE_STATUSES = {
    "active": identity_pb2.SERVICE_ACCOUNT_STATUS_ACTIVE,
    "disabled": identity_pb2.SERVICE_ACCOUNT_STATUS_DISABLED,
}


def client_of(context: Context, user_agent: str = "") -> domain.Client:
    if not user_agent:
        user_agent = next(
            (str(v) for k, v in context.invocation_metadata() or () if k == "user-agent"), ""
        )
    return domain.Client(peer=client_peer(context), user_agent=user_agent or None)


def tokens_message(tokens: domain.Tokens) -> pb.AuthTokens:
    return pb.AuthTokens(
        access_token=tokens.access_token,
        access_token_expires_at=protoconv.timestamp(tokens.access_expires_at),
        refresh_token=tokens.refresh_token,
        refresh_token_expires_at=protoconv.timestamp(tokens.refresh_expires_at),
        token_type=TOKEN_TYPE,
        session_id=tokens.session_id,
    )


def user_message(row: Row[Any]) -> identity_pb2.User:
    return identity_pb2.User(
        user_id=row.user_id,
        name=row.name or "",
        email=row.email or "",
        phone_number=row.phone_number or "",
        referral_code=row.referral_code or "",
        referred_by=row.referred_by or "",
        user_type=protoconv.USER_TYPES_BY_NAME[row.user_type],
        status=USER_STATUSES[row.status],
        wallet_balance=protoconv.money(row.wallet_balance),
        created_at=protoconv.timestamp(row.created_at),
        updated_at=protoconv.timestamp(row.updated_at),
        role_id=row.role_id or 0,
        role_name=row.role_name or "",
    )


def admin_message(row: Row[Any]) -> identity_pb2.Admin:
    return identity_pb2.Admin(
        admin_id=row.admin_id,
        name=row.name or "",
        email=row.email or "",
        phone_number=row.phone_number or "",
        status=ADMIN_STATUSES[row.status],
        role_id=row.role_id or 0,
        role_name=row.role_name or "",
        mfa_enabled=row.mfa_enabled,
        created_at=protoconv.timestamp(row.created_at),
        updated_at=protoconv.timestamp(row.updated_at),
    )


def service_account_message(row: Row[Any]) -> identity_pb2.ServiceAccount:
    return identity_pb2.ServiceAccount(
        service_account_id=row.service_account_id,
        client_id=row.client_id,
        name=row.name,
        role_id=row.role_id,
        role_name=row.role_name or "",
        status=SERVICE_STATUSES[row.status],
        created_at=protoconv.timestamp(row.created_at),
        created_by=row.created_by or 0,
        last_used_at=protoconv.timestamp(row.last_used_at),
    )


def principal_message(kind: str, row: Row[Any]) -> identity_pb2.Principal:
    if kind == "user":
        return identity_pb2.Principal(user=user_message(row))
    if kind == "admin":
        return identity_pb2.Principal(admin=admin_message(row))
    return identity_pb2.Principal(service_account=service_account_message(row))


def _is_admin(principal_type: int) -> bool:
    if principal_type not in (
        common_pb2.PRINCIPAL_TYPE_UNSPECIFIED,
        common_pb2.PRINCIPAL_TYPE_USER,
        common_pb2.PRINCIPAL_TYPE_ADMIN,
    ):
        raise InvalidArgument.field(
            "principal_type", "must be PRINCIPAL_TYPE_USER or PRINCIPAL_TYPE_ADMIN"
        )
    return principal_type == common_pb2.PRINCIPAL_TYPE_ADMIN


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(self, auth: domain.Auth) -> None:
        self._auth = auth

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.RegisterResponse:
        user_type = protoconv.enum_filter("user_type", request.user_type, protoconv.USER_TYPES)
        row, tokens = await domain.register(
            self._auth,
            domain.Registration(
                name=request.name,
                email=request.email,
                phone_number=request.phone_number,
                password=request.password,
                user_type=user_type,
                referral_code=request.referral_code,
            ),
            client_of(context),
        )
        return pb.RegisterResponse(user=user_message(row), tokens=tokens_message(tokens))

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        result = await domain.login(
            self._auth,
            email=request.email,
            phone_number=request.phone_number,
            password=request.password,
            admin=_is_admin(request.principal_type),
            client=client_of(context, request.user_agent),
        )
        if result.tokens is not None:
            return pb.LoginResponse(tokens=tokens_message(result.tokens))
        challenge = result.challenge
        assert challenge is not None
        message = pb.MfaChallenge(
            challenge_token=challenge.challenge_token,
            expires_at=protoconv.timestamp(challenge.expires_at),
            method=pb.MFA_METHOD_TOTP,
        )
        if challenge.enrolment_secret is not None:
            message.enrolment.CopyFrom(
                pb.TotpEnrolment(
                    secret=challenge.enrolment_secret, otpauth_uri=challenge.enrolment_uri or ""
                )
            )
        return pb.LoginResponse(mfa_challenge=message)

    async def VerifyMfa(self, request: pb.VerifyMfaRequest, context: Context) -> pb.AuthTokens:
        tokens = await domain.verify_mfa(
            self._auth,
            challenge_token=request.challenge_token,
            code=request.totp_code,
            client=client_of(context),
        )
        return tokens_message(tokens)

    async def RequestOtp(
        self, request: pb.RequestOtpRequest, context: Context
    ) -> pb.RequestOtpResponse:
        expires, resend = await domain.request_otp(
            self._auth, phone_number=request.phone_number, client=client_of(context)
        )
        return pb.RequestOtpResponse(
            expires_at=protoconv.timestamp(expires),
            resend_after=duration_pb2.Duration(seconds=resend),
        )

    async def VerifyOtp(self, request: pb.VerifyOtpRequest, context: Context) -> pb.AuthTokens:
        tokens = await domain.verify_otp(
            self._auth,
            phone_number=request.phone_number,
            code=request.code,
            client=client_of(context, request.user_agent),
        )
        return tokens_message(tokens)

    async def RefreshToken(
        self, request: pb.RefreshTokenRequest, context: Context
    ) -> pb.AuthTokens:
        tokens = await domain.refresh(
            self._auth, refresh_token=request.refresh_token, client=client_of(context)
        )
        return tokens_message(tokens)

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> empty_pb2.Empty:
        await domain.logout(
            self._auth, require_session_principal(), all_sessions=request.all_sessions
        )
        return empty_pb2.Empty()

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Context
    ) -> pb.ListSessionsResponse:
        who = require_session_principal()
        rows, token = await domain.list_sessions(
            self._auth,
            who,
            include_inactive=request.include_inactive,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListSessionsResponse(
            sessions=[
                pb.Session(
                    session_id=str(r.session_id),
                    login_time=protoconv.timestamp(r.login_time),
                    last_active=protoconv.timestamp(r.last_active),
                    expires_at=protoconv.timestamp(r.refresh_token_expires_at),
                    is_active=r.is_active,
                    revoked_at=protoconv.timestamp(r.revoked_at),
                    user_agent=r.user_agent or "",
                    ip_address=r.ip_address or "",
                    current=str(r.session_id) == who.session_id,
                )
                for r in rows
            ],
            next_page_token=token,
        )

    async def RevokeSession(
        self, request: pb.RevokeSessionRequest, context: Context
    ) -> empty_pb2.Empty:
        await domain.revoke_session(self._auth, require_session_principal(), request.session_id)
        return empty_pb2.Empty()

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: Context
    ) -> empty_pb2.Empty:
        await domain.change_password(
            self._auth,
            require_session_principal(),
            current_password=request.current_password,
            new_password=request.new_password,
            client=client_of(context),
        )
        return empty_pb2.Empty()

    async def RequestPasswordReset(
        self, request: pb.RequestPasswordResetRequest, context: Context
    ) -> empty_pb2.Empty:
        await domain.request_password_reset(
            self._auth,
            email=request.email,
            phone_number=request.phone_number,
            admin=_is_admin(request.principal_type),
            client=client_of(context),
        )
        return empty_pb2.Empty()

    async def ResetPassword(
        self, request: pb.ResetPasswordRequest, context: Context
    ) -> empty_pb2.Empty:
        await domain.reset_password(
            self._auth, reset_token=request.reset_token, new_password=request.new_password
        )
        return empty_pb2.Empty()

    async def GetMe(self, request: pb.GetMeRequest, context: Context) -> identity_pb2.Principal:
        who = principal()
        return principal_message(who.kind, await domain.me(self._auth, who))

    async def UpdateMe(
        self, request: pb.UpdateMeRequest, context: Context
    ) -> identity_pb2.Principal:
        who = principal()
        row = await domain.update_me(
            self._auth,
            who,
            changes={
                "name": request.profile.name,
                "email": request.profile.email,
                "phone_number": request.profile.phone_number,
            },
            paths=list(request.update_mask.paths),
        )
        return principal_message(who.kind, row)

    async def GetJwks(self, request: pb.GetJwksRequest, context: Context) -> pb.GetJwksResponse:
        now = datetime.now().astimezone()
        return pb.GetJwksResponse(
            keys=[pb.Jwk(**key) for key in self._auth.security.keyring.jwks(now)]
        )

    async def IssueServiceToken(
        self, request: pb.IssueServiceTokenRequest, context: Context
    ) -> pb.IssueServiceTokenResponse:
        token, expires = await domain.issue_service_token(
            self._auth,
            client_id=request.client_id,
            client_secret=request.client_secret,
            client=client_of(context),
        )
        return pb.IssueServiceTokenResponse(
            access_token=token,
            access_token_expires_at=protoconv.timestamp(expires),
            token_type=TOKEN_TYPE,
        )
