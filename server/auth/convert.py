"""AuthService messages <-> identity values (server/auth/domain.py): pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from google.protobuf import duration_pb2

from gencharge.v1 import auth_service_pb2 as pb
from gencharge.v1 import common_pb2, identity_pb2
from server.auth import domain
from server.core import protoconv
from server.core.errors import InvalidArgument
from server.core.peers import CallContext, client_peer

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


# --- requests -> values -------------------------------------------------------------------


def client_of(context: CallContext, user_agent: str = "") -> domain.Client:
    """Where the call comes from: the resolved peer and the user agent (the request's
    own ``user_agent`` field when it has one, else the ``user-agent`` metadata)."""
    if not user_agent:
        user_agent = next(
            (str(v) for k, v in context.invocation_metadata() or () if k == "user-agent"), ""
        )
    return domain.Client(peer=client_peer(context), user_agent=user_agent or None)


def is_admin(principal_type: int) -> bool:
    """Login and password reset: True for PRINCIPAL_TYPE_ADMIN, False for a user."""
    if principal_type not in (
        common_pb2.PRINCIPAL_TYPE_UNSPECIFIED,
        common_pb2.PRINCIPAL_TYPE_USER,
        common_pb2.PRINCIPAL_TYPE_ADMIN,
    ):
        raise InvalidArgument.field(
            "principal_type", "must be PRINCIPAL_TYPE_USER or PRINCIPAL_TYPE_ADMIN"
        )
    return principal_type == common_pb2.PRINCIPAL_TYPE_ADMIN


def registration_of(request: pb.RegisterRequest) -> domain.Registration:
    return domain.Registration(
        name=request.name,
        email=request.email,
        phone_number=request.phone_number,
        password=request.password,
        user_type=protoconv.enum_filter("user_type", request.user_type, protoconv.USER_TYPES),
        referral_code=request.referral_code,
    )


CONTACT_CHANNELS = {
    pb.CONTACT_CHANNEL_EMAIL: "email",
    pb.CONTACT_CHANNEL_PHONE: "phone",
}


def contact_channel_of(request: pb.SendContactCodeRequest) -> domain.Channel:
    return domain.contact_channel(CONTACT_CHANNELS.get(request.channel))


def contact_change_of(request: pb.StartContactChangeRequest) -> domain.ContactChange:
    return domain.validate_contact_change(
        email=request.email,
        phone_number=request.phone_number,
        current_password=request.current_password,
        current_contact_code=request.current_contact_code,
    )


def profile_update_of(request: pb.UpdateMeRequest) -> domain.ProfileUpdate:
    return domain.ProfileUpdate(
        changes={
            "name": request.profile.name,
            "email": request.profile.email,
            "phone_number": request.profile.phone_number,
        },
        paths=tuple(request.update_mask.paths),
    )


# --- values -> messages -------------------------------------------------------------------


def tokens_message(tokens: domain.Tokens) -> pb.AuthTokens:
    return pb.AuthTokens(
        access_token=tokens.access_token,
        access_token_expires_at=protoconv.timestamp(tokens.access_expires_at),
        refresh_token=tokens.refresh_token,
        refresh_token_expires_at=protoconv.timestamp(tokens.refresh_expires_at),
        token_type=TOKEN_TYPE,
        session_id=tokens.session_id,
    )


def register_response(user: domain.User, tokens: domain.Tokens) -> pb.RegisterResponse:
    return pb.RegisterResponse(user=user_message(user), tokens=tokens_message(tokens))


def login_response(result: domain.LoginResult) -> pb.LoginResponse:
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


def contact_code_response(
    expires_at: datetime, resend_after_seconds: int
) -> pb.SendContactCodeResponse:
    return pb.SendContactCodeResponse(
        expires_at=protoconv.timestamp(expires_at),
        resend_after=duration_pb2.Duration(seconds=resend_after_seconds),
    )


def contact_change_response(
    expires_at: datetime, resend_after_seconds: int
) -> pb.StartContactChangeResponse:
    return pb.StartContactChangeResponse(
        expires_at=protoconv.timestamp(expires_at),
        resend_after=duration_pb2.Duration(seconds=resend_after_seconds),
    )


def otp_response(expires_at: datetime, resend_after_seconds: int) -> pb.RequestOtpResponse:
    return pb.RequestOtpResponse(
        expires_at=protoconv.timestamp(expires_at),
        resend_after=duration_pb2.Duration(seconds=resend_after_seconds),
    )


def session_message(session: domain.Session) -> pb.Session:
    return pb.Session(
        session_id=str(session.session_id),
        login_time=protoconv.timestamp(session.login_time),
        last_active=protoconv.timestamp(session.last_active),
        expires_at=protoconv.timestamp(session.expires_at),
        is_active=session.is_active,
        revoked_at=protoconv.timestamp(session.revoked_at),
        user_agent=session.user_agent or "",
        ip_address=session.ip_address or "",
        current=session.current,
    )


def sessions_response(
    sessions: Sequence[domain.Session], next_page_token: str
) -> pb.ListSessionsResponse:
    return pb.ListSessionsResponse(
        sessions=[session_message(s) for s in sessions], next_page_token=next_page_token
    )


def user_message(user: domain.User) -> identity_pb2.User:
    return identity_pb2.User(
        user_id=user.user_id,
        name=user.name or "",
        email=user.email or "",
        phone_number=user.phone_number or "",
        referral_code=user.referral_code or "",
        referred_by=user.referred_by or "",
        user_type=protoconv.USER_TYPES_BY_NAME[user.user_type],
        status=USER_STATUSES[user.status],
        wallet_balance=protoconv.money(user.wallet_balance),
        created_at=protoconv.timestamp(user.created_at),
        updated_at=protoconv.timestamp(user.updated_at),
        role_id=user.role_id or 0,
        role_name=user.role_name or "",
        email_verified=user.email_verified,
        phone_verified=user.phone_verified,
    )


def admin_message(admin: domain.Admin) -> identity_pb2.Admin:
    return identity_pb2.Admin(
        admin_id=admin.admin_id,
        name=admin.name or "",
        email=admin.email or "",
        phone_number=admin.phone_number or "",
        status=ADMIN_STATUSES[admin.status],
        role_id=admin.role_id or 0,
        role_name=admin.role_name or "",
        mfa_enabled=admin.mfa_enabled,
        created_at=protoconv.timestamp(admin.created_at),
        updated_at=protoconv.timestamp(admin.updated_at),
        email_verified=admin.email_verified,
        phone_verified=admin.phone_verified,
    )


def service_account_message(account: domain.ServiceAccount) -> identity_pb2.ServiceAccount:
    return identity_pb2.ServiceAccount(
        service_account_id=account.service_account_id,
        client_id=account.client_id,
        name=account.name,
        role_id=account.role_id,
        role_name=account.role_name or "",
        status=SERVICE_STATUSES[account.status],
        created_at=protoconv.timestamp(account.created_at),
        created_by=account.created_by or 0,
        last_used_at=protoconv.timestamp(account.last_used_at),
        scopes=account.scopes,
        description=account.description or "",
    )


def principal_message(account: domain.Account) -> identity_pb2.Principal:
    if isinstance(account, domain.User):
        return identity_pb2.Principal(user=user_message(account))
    if isinstance(account, domain.Admin):
        return identity_pb2.Principal(admin=admin_message(account))
    return identity_pb2.Principal(service_account=service_account_message(account))


def jwks_response(keys: Sequence[Mapping[str, str]]) -> pb.GetJwksResponse:
    return pb.GetJwksResponse(keys=[pb.Jwk(**key) for key in keys])


def service_token_response(token: str, expires_at: datetime) -> pb.IssueServiceTokenResponse:
    return pb.IssueServiceTokenResponse(
        access_token=token,
        access_token_expires_at=protoconv.timestamp(expires_at),
        token_type=TOKEN_TYPE,
    )
