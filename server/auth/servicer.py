"""AuthService: proto -> convert -> unit of work or flow -> convert -> proto."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from gencharge.v1 import auth_service_pb2 as pb
from gencharge.v1 import auth_service_pb2_grpc, identity_pb2
from server.auth import convert, domain, flows
from server.auth.principal import principal, require_session_principal
from server.auth.security import Security
from server.core.resources import Resources

Context = grpc.aio.ServicerContext[Any, Any]


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(self, resources: Resources, security: Security) -> None:
        self._db = resources.db
        self._issuer = domain.Issuer(
            tokens=security.tokens,
            secret_box=security.secret_box,
            otp_pepper=security.otp_pepper,
            settings=resources.settings,
        )
        self._keyring = security.keyring
        self._throttle = security.throttle
        self._sender = security.sender
        self._sessions = security.authenticator

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.RegisterResponse:
        user, tokens = await flows.register(
            self._db,
            convert.registration_of(request),
            convert.client_of(context),
            issuer=self._issuer,
            throttle=self._throttle,
        )
        return convert.register_response(user, tokens)

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        result = await flows.login(
            self._db,
            email=request.email,
            phone_number=request.phone_number,
            password=request.password,
            admin=convert.is_admin(request.principal_type),
            client=convert.client_of(context, request.user_agent),
            issuer=self._issuer,
            throttle=self._throttle,
        )
        return convert.login_response(result)

    async def VerifyMfa(self, request: pb.VerifyMfaRequest, context: Context) -> pb.AuthTokens:
        tokens = await flows.verify_mfa(
            self._db,
            challenge_token=request.challenge_token,
            code=request.totp_code,
            client=convert.client_of(context),
            issuer=self._issuer,
            throttle=self._throttle,
        )
        return convert.tokens_message(tokens)

    async def RequestOtp(
        self, request: pb.RequestOtpRequest, context: Context
    ) -> pb.RequestOtpResponse:
        expires, resend = await flows.request_otp(
            self._db,
            phone_number=request.phone_number,
            client=convert.client_of(context),
            issuer=self._issuer,
            throttle=self._throttle,
            sender=self._sender,
        )
        return convert.otp_response(expires, resend)

    async def VerifyOtp(self, request: pb.VerifyOtpRequest, context: Context) -> pb.AuthTokens:
        tokens = await flows.verify_otp(
            self._db,
            phone_number=request.phone_number,
            code=request.code,
            client=convert.client_of(context, request.user_agent),
            issuer=self._issuer,
            throttle=self._throttle,
        )
        return convert.tokens_message(tokens)

    async def RefreshToken(
        self, request: pb.RefreshTokenRequest, context: Context
    ) -> pb.AuthTokens:
        tokens = await flows.refresh(
            self._db,
            refresh_token=request.refresh_token,
            issuer=self._issuer,
            sessions=self._sessions,
        )
        return convert.tokens_message(tokens)

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> empty_pb2.Empty:
        await flows.logout(
            self._db,
            require_session_principal(),
            all_sessions=request.all_sessions,
            sessions=self._sessions,
        )
        return empty_pb2.Empty()

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Context
    ) -> pb.ListSessionsResponse:
        query = domain.sessions_query(
            require_session_principal(),
            include_inactive=request.include_inactive,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        async with self._db.read_only() as conn:
            sessions, token = await domain.list_sessions(query, conn=conn)
        return convert.sessions_response(sessions, token)

    async def RevokeSession(
        self, request: pb.RevokeSessionRequest, context: Context
    ) -> empty_pb2.Empty:
        await flows.revoke_session(
            self._db, require_session_principal(), request.session_id, sessions=self._sessions
        )
        return empty_pb2.Empty()

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: Context
    ) -> empty_pb2.Empty:
        await flows.change_password(
            self._db,
            require_session_principal(),
            current_password=request.current_password,
            new_password=request.new_password,
            client=convert.client_of(context),
            throttle=self._throttle,
            sessions=self._sessions,
        )
        return empty_pb2.Empty()

    async def RequestPasswordReset(
        self, request: pb.RequestPasswordResetRequest, context: Context
    ) -> empty_pb2.Empty:
        await flows.request_password_reset(
            self._db,
            email=request.email,
            phone_number=request.phone_number,
            admin=convert.is_admin(request.principal_type),
            client=convert.client_of(context),
            issuer=self._issuer,
            throttle=self._throttle,
            sender=self._sender,
        )
        return empty_pb2.Empty()

    async def ResetPassword(
        self, request: pb.ResetPasswordRequest, context: Context
    ) -> empty_pb2.Empty:
        await flows.reset_password(
            self._db,
            reset_token=request.reset_token,
            new_password=request.new_password,
            sessions=self._sessions,
        )
        return empty_pb2.Empty()

    async def GetMe(self, request: pb.GetMeRequest, context: Context) -> identity_pb2.Principal:
        who = principal()
        async with self._db.read_only() as conn:
            account = await domain.me(who, conn=conn)
        return convert.principal_message(account)

    async def UpdateMe(
        self, request: pb.UpdateMeRequest, context: Context
    ) -> identity_pb2.Principal:
        account = await flows.update_me(self._db, principal(), convert.profile_update_of(request))
        return convert.principal_message(account)

    async def SendContactCode(
        self, request: pb.SendContactCodeRequest, context: Context
    ) -> pb.SendContactCodeResponse:
        who = require_session_principal()
        expires, resend = await flows.send_contact_code(
            self._db,
            who,
            convert.contact_channel_of(request),
            client=convert.client_of(context),
            issuer=self._issuer,
            throttle=self._throttle,
            sender=self._sender,
        )
        return convert.contact_code_response(expires, resend)

    async def VerifyContact(
        self, request: pb.VerifyContactRequest, context: Context
    ) -> identity_pb2.Principal:
        account = await flows.verify_contact(
            self._db,
            require_session_principal(),
            code=request.code,
            client=convert.client_of(context),
            issuer=self._issuer,
            throttle=self._throttle,
        )
        return convert.principal_message(account)

    async def StartContactChange(
        self, request: pb.StartContactChangeRequest, context: Context
    ) -> pb.StartContactChangeResponse:
        who = require_session_principal()
        expires, resend = await flows.start_contact_change(
            self._db,
            who,
            convert.contact_change_of(request),
            client=convert.client_of(context),
            issuer=self._issuer,
            throttle=self._throttle,
            sender=self._sender,
        )
        return convert.contact_change_response(expires, resend)

    async def ConfirmContactChange(
        self, request: pb.ConfirmContactChangeRequest, context: Context
    ) -> identity_pb2.Principal:
        account = await flows.confirm_contact_change(
            self._db,
            require_session_principal(),
            code=request.code,
            client=convert.client_of(context),
            issuer=self._issuer,
            throttle=self._throttle,
            sender=self._sender,
            sessions=self._sessions,
        )
        return convert.principal_message(account)

    async def GetJwks(self, request: pb.GetJwksRequest, context: Context) -> pb.GetJwksResponse:
        return convert.jwks_response(self._keyring.jwks(self._issuer.now()))

    async def IssueServiceToken(
        self, request: pb.IssueServiceTokenRequest, context: Context
    ) -> pb.IssueServiceTokenResponse:
        token, expires = await flows.issue_service_token(
            self._db,
            client_id=request.client_id,
            client_secret=request.client_secret,
            client=convert.client_of(context),
            issuer=self._issuer,
            throttle=self._throttle,
        )
        return convert.service_token_response(token, expires)
