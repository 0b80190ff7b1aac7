"""The ``gencharge`` command: serve, migrate, seed, create-admin, create-service-account."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable

from server.admin import flows as admin_flows
from server.auth import flows as auth_flows
from server.auth.identifiers import normalize_phone
from server.auth.password_policy import password_problem
from server.core import logs
from server.core.config import (
    DEV_ADMIN_EMAIL,
    DEV_ADMIN_PASSWORD,
    ConfigurationError,
    Settings,
    get_settings,
)
from server.core.errors import DomainError
from server.core.resources import Resources
from server.ops import runtime
from server.ops.workers import WorkerDied


def _banner(settings: Settings) -> None:
    """What ``make run`` prints for a newcomer: where it listens, how to log in."""
    credentials = runtime.bootstrap_admin_credentials(settings, settings.embedded_postgres)
    workers = f", {settings.workers} workers" if settings.workers > 1 else ""
    lines = [f"GenCharge gRPC service on {settings.listen} ({settings.environment.value}{workers})"]
    if settings.embedded:
        lines.append(f"embedded databases under {settings.data_dir.resolve()}")
    if credentials == (DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD):
        lines.append(
            f"development admin: {DEV_ADMIN_EMAIL} / {DEV_ADMIN_PASSWORD} "
            "(set GENCHARGE_BOOTSTRAP_ADMIN_EMAIL/_PASSWORD to choose your own)"
        )
    print("\n".join(lines), file=sys.stderr, flush=True)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    _banner(settings)
    try:
        asyncio.run(runtime.serve(settings))
    except WorkerDied as exc:
        print(f"gencharge: {exc}; see the log above", file=sys.stderr)
        return 1
    return 0


def _with_databases(
    settings: Settings, work: Callable[[Resources, runtime.Databases], Awaitable[None]]
) -> int:
    async def main() -> None:
        databases = await runtime.open_databases(settings)
        try:
            async with runtime.connected(settings, databases) as resources:
                await work(resources, databases)
        finally:
            await asyncio.to_thread(databases.stop)

    asyncio.run(main())
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def work(resources: Resources, databases: runtime.Databases) -> None:
        await runtime.migrate(resources, databases.database_url)

    return _with_databases(settings, work)


def _seed(settings: Settings, args: argparse.Namespace) -> int:
    if args.demo and settings.production:
        print("refusing: demo data is never loaded in production mode", file=sys.stderr)
        return 2

    async def work(resources: Resources, databases: runtime.Databases) -> None:
        await runtime.migrate(resources, databases.database_url)
        await runtime.load_seed(resources, demo=args.demo)

    return _with_databases(settings, work)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise SystemExit("passwords differ")
    return first


def _create_admin(settings: Settings, args: argparse.Namespace) -> int:
    password = _read_password(args)
    problem = password_problem(password, context=[args.email, args.name])
    if problem:
        print(f"refusing: {problem}", file=sys.stderr)
        return 2
    if args.phone and normalize_phone(args.phone) is None:
        print("refusing: --phone must be a 10-digit Indian mobile number", file=sys.stderr)
        return 2

    async def work(resources: Resources, databases: runtime.Databases) -> None:
        await runtime.migrate(resources, databases.database_url)
        await runtime.load_seed(resources, demo=False)
        created = await admin_flows.ensure_admin(
            resources.db,
            email=args.email,
            name=args.name,
            password=password,
            phone_number=args.phone,
            role_name=args.role,
        )
        print(("created" if created else "exists, unchanged") + f": {args.email}")

    return _with_databases(settings, work)


def _reset_admin_mfa(settings: Settings, args: argparse.Namespace) -> int:
    found = False

    async def work(resources: Resources, databases: runtime.Databases) -> None:
        nonlocal found
        await runtime.migrate(resources, databases.database_url)
        found = await admin_flows.reset_admin_mfa(resources.db, args.email)

    code = _with_databases(settings, work)
    if not found:
        print(f"no administrator with e-mail {args.email}", file=sys.stderr)
        return 1
    print(
        f"second factor reset: {args.email} enrols a new authenticator at the next login; "
        "their sessions were ended"
    )
    return code


def _create_service_account(settings: Settings, args: argparse.Namespace) -> int:
    async def work(resources: Resources, databases: runtime.Databases) -> None:
        await runtime.migrate(resources, databases.database_url)
        await runtime.load_seed(resources, demo=False)
        client_id, secret = await auth_flows.create_service_account(
            resources.db, name=args.name, client_id=args.client_id
        )
        print(f"client_id: {client_id}")
        print(f"client_secret: {secret}")
        print("Store the secret now: it is shown once and only its hash is kept.")

    try:
        return _with_databases(settings, work)
    except DomainError as exc:
        print(f"refusing: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gencharge",
        description="GenCharge mobile recharge service. Settings come from GENCHARGE_* "
        "environment variables; with no database URLs, embedded servers are used.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gRPC service").set_defaults(run=_serve)
    sub.add_parser("migrate", help="apply PostgreSQL and MongoDB migrations").set_defaults(
        run=_migrate
    )
    seed = sub.add_parser("seed", help="load reference data (and --demo data in development)")
    seed.add_argument("--demo", action="store_true", help="also load the demo data set")
    seed.set_defaults(run=_seed)
    admin = sub.add_parser("create-admin", help="create an administrator account")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", required=True)
    admin.add_argument("--phone", default=None)
    admin.add_argument("--role", default="Admin", help="role name (Admin or Support)")
    admin.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    admin.set_defaults(run=_create_admin)
    reset = sub.add_parser(
        "reset-admin-mfa",
        help="forget an administrator's TOTP authenticator (lost device, lost data key)",
    )
    reset.add_argument("email")
    reset.set_defaults(run=_reset_admin_mfa)
    service = sub.add_parser(
        "create-service-account",
        help="create a service account for an internal caller (prints its secret once)",
    )
    service.add_argument("--name", required=True, help="what the caller is, e.g. billing-sync")
    service.add_argument("--client-id", default=None, help="default: svc_<random>")
    service.set_defaults(run=_create_service_account)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)
    try:
        code: int = args.run(settings, args)
    except ConfigurationError as exc:
        print(f"gencharge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
