"""The ``gencharge`` command: serve, migrate, seed, create-admin, reset-admin-mfa,
service accounts (create-service-account, set-service-account-scopes,
list-service-accounts), a customer's data export (export-user), generate-report, and
backup create|list|verify|restore|drill (server/ops/backup_cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from server.admin import flows as admin_flows
from server.admin.staff import flows as staff_flows
from server.admin.staff.domain import NewAdmin, NewServiceAccount, check_new_admin
from server.admin.users import flows as user_flows
from server.audit.scope import CLI_ACTOR, job_scope
from server.auth.domain import ServiceAccount
from server.auth.scopes import SCOPES, check_scopes
from server.core import logs
from server.core.config import (
    DEV_ADMIN_EMAIL,
    DEV_ADMIN_PASSWORD,
    ConfigurationError,
    Settings,
    get_settings,
)
from server.core.errors import DomainError, InvalidArgument, NotFound
from server.core.resources import Resources
from server.core.validation import INT4_MAX
from server.ops import backup_cli, runtime
from server.ops.workers import WorkerDied
from server.reports.catalog import BY_ID as REPORT_TYPES_BY_ID
from server.reports.catalog import ReportFormat
from server.reports.flows import Reports


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
    try:
        # The checks CreateAdmin makes, before any database is started.
        check_new_admin(
            NewAdmin(
                name=args.name,
                email=args.email,
                phone_number=args.phone or "",
                password=password,
                role_name=args.role,
                prefix="",
                initial_field="password",
            )
        )
    except InvalidArgument as exc:
        print(f"refusing: {_refusal(exc)}", file=sys.stderr)
        return 2

    async def work(resources: Resources, databases: runtime.Databases) -> None:
        await runtime.migrate(resources, databases.database_url)
        await runtime.load_seed(resources, demo=False)
        with job_scope("create-admin", actor=CLI_ACTOR):
            created = await admin_flows.ensure_admin(
                resources.db,
                email=args.email,
                name=args.name,
                password=password,
                phone_number=args.phone,
                role_name=args.role,
            )
        print(("created" if created else "exists, unchanged") + f": {args.email}")

    try:
        return _with_databases(settings, work)
    except ValueError as exc:
        print(f"refusing: {exc}", file=sys.stderr)
        return 2


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


def _refusal(exc: DomainError) -> str:
    if isinstance(exc, InvalidArgument) and exc.violations:
        return "; ".join(f"{v.field}: {v.description}" for v in exc.violations)
    return str(exc)


def _scopes_text(scopes: tuple[str, ...]) -> str:
    return " ".join(scopes) if scopes else "none"


def _scopes_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The ``--scope`` values, checked before any database is started."""
    return check_scopes(args.scope or [], field="--scope")


def _create_service_account(settings: Settings, args: argparse.Namespace) -> int:
    try:
        scopes = _scopes_of(args)
    except InvalidArgument as exc:
        print(f"refusing: {_refusal(exc)}", file=sys.stderr)
        return 2

    async def work(resources: Resources, databases: runtime.Databases) -> None:
        await runtime.migrate(resources, databases.database_url)
        await runtime.load_seed(resources, demo=False)
        new = NewServiceAccount(
            name=args.name,
            client_id=args.client_id or "",
            scopes=scopes,
            description=args.description or "",
            prefix="--",
        )
        with job_scope("create-service-account", actor=CLI_ACTOR):
            created = await staff_flows.create_service_account(resources.db, new)
        print(f"client_id: {created.account.client_id}")
        print(f"client_secret: {created.client_secret}")
        print(f"scopes: {_scopes_text(scopes)}")
        print("Store the secret now: it is shown once and only its hash is kept.")

    try:
        return _with_databases(settings, work)
    except DomainError as exc:
        print(f"refusing: {_refusal(exc)}", file=sys.stderr)
        return 2


def _set_service_account_scopes(settings: Settings, args: argparse.Namespace) -> int:
    if not args.scope and not args.none:
        print("refusing: name the scopes with --scope (--none takes all away)", file=sys.stderr)
        return 2
    if args.scope and args.none:
        print("refusing: --scope and --none exclude each other", file=sys.stderr)
        return 2
    try:
        scopes = _scopes_of(args)
    except InvalidArgument as exc:
        print(f"refusing: {_refusal(exc)}", file=sys.stderr)
        return 2

    async def work(resources: Resources, databases: runtime.Databases) -> None:
        await runtime.migrate(resources, databases.database_url)
        with job_scope("set-service-account-scopes", actor=CLI_ACTOR):
            account = await staff_flows.set_service_account_scopes(
                resources.db, args.client_id, scopes
            )
        print(f"{account.client_id}: scopes {_scopes_text(account.scopes)}")
        print(
            "Tokens issued before lose removed scopes within seconds; "
            "added scopes need a new token (IssueServiceToken)."
        )

    try:
        return _with_databases(settings, work)
    except DomainError as exc:
        print(f"refusing: {_refusal(exc)}", file=sys.stderr)
        return 2


def _account_line(account: ServiceAccount) -> str:
    used = account.last_used_at.isoformat(timespec="seconds") if account.last_used_at else "never"
    return "\t".join(
        (account.client_id, account.status, _scopes_text(account.scopes), used, account.name)
    )


def _list_service_accounts(settings: Settings, args: argparse.Namespace) -> int:
    async def work(resources: Resources, databases: runtime.Databases) -> None:
        await runtime.migrate(resources, databases.database_url)
        accounts = await staff_flows.list_service_accounts(resources.db)
        print("client_id\tstatus\tscopes\tlast_token\tname")
        for account in accounts:
            print(_account_line(account))

    return _with_databases(settings, work)


def _export_user(settings: Settings, args: argparse.Namespace) -> int:
    """Write one customer's data export (the JSON document of AdminService
    ExportUserData) to ``--output`` or standard output; audited as ``system:cli``."""
    if not args.reason.strip():
        print("refusing: --reason must not be blank", file=sys.stderr)
        return 2
    if not 0 < args.user_id <= INT4_MAX:
        print("refusing: the user id must be a positive 32-bit integer", file=sys.stderr)
        return 2

    async def work(resources: Resources, databases: runtime.Databases) -> None:
        await runtime.migrate(resources, databases.database_url)
        with job_scope("export-user", actor=CLI_ACTOR):
            document = await user_flows.export(
                resources.db, resources.mongo_db, args.user_id, args.reason
            )
        body = user_flows.export_bytes(document)
        if args.output is None or str(args.output) == "-":
            sys.stdout.buffer.write(body + b"\n")
            sys.stdout.flush()
        else:
            args.output.write_bytes(body + b"\n")
            print(f"exported user {args.user_id} to {args.output}", file=sys.stderr)

    try:
        return _with_databases(settings, work)
    except DomainError as exc:
        print(f"refusing: {_refusal(exc)}", file=sys.stderr)
        return 1 if isinstance(exc, NotFound) else 2


class _ProgressBar:
    """Rows written, as a bar when the total is known, redrawn at most ten times a
    second; only on a terminal (a pipe or a log gets the final line only)."""

    WIDTH = 30

    def __init__(self, total: int | None, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self._drawn = 0.0

    def line(self, rows: int) -> str:
        if self.total:
            done = min(1.0, rows / self.total)
            filled = int(self.WIDTH * done)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            return f"[{bar}] {rows:,}/{self.total:,} rows ({done:.0%})"
        return f"{rows:,} rows written"

    def __call__(self, rows: int) -> None:
        now = time.monotonic()
        if self.tty and now - self._drawn >= 0.1:
            self._drawn = now
            print(f"\r{self.line(rows)}", end="", file=self.stream, flush=True)

    def done(self, rows: int) -> None:
        print(f"\r{self.line(rows)}" if self.tty else self.line(rows), file=self.stream)


def _report_type_of(value: str) -> int | None:
    if value.isdigit():
        return int(value)
    return next((t.report_type_id for t in REPORT_TYPES_BY_ID.values() if t.name == value), None)


def _generate_report(settings: Settings, args: argparse.Namespace) -> int:
    report_type_id = _report_type_of(args.type)
    if report_type_id is None:
        print(f"refusing: unknown report type {args.type!r}; see --help", file=sys.stderr)
        return 2
    fmt = ReportFormat("excel" if args.format == "xlsx" else args.format)
    parameters = {k: v for k, v in (("from", args.start), ("to", args.end)) if v}
    output = Path(args.output)
    outcome: list[int] = []

    async def work(resources: Resources, databases: runtime.Databases) -> None:
        reports = Reports.of(resources)
        try:
            total = await reports.count(report_type_id, fmt, parameters)
            bar = _ProgressBar(total)
            with job_scope("generate-report", actor=CLI_ACTOR):
                report = await reports.generate(
                    report_type_id,
                    fmt,
                    parameters,
                    generated_by=None,
                    actor=CLI_ACTOR,
                    progress=bar,
                )
            bar.done(report.row_count)
            _, chunks = await reports.download(report.report_id)
            handle = await asyncio.to_thread(output.open, "wb")
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                handle.close()
        except DomainError as exc:
            print(f"refusing: {_refusal(exc)}", file=sys.stderr)
            outcome.append(2)
            return
        print(
            f"report {report.report_id} ({report.report_type_name}, {fmt.value}): "
            f"{report.row_count} rows, {report.size_bytes} bytes, sha256 {report.sha256}\n"
            f"written to {output} (stored at {report.download_uri})"
        )

    _with_databases(settings, work)
    return outcome[0] if outcome else 0


def _report_types_help() -> str:
    lines = [
        f"  {t.report_type_id:>2}  {t.name:<17} {t.title}" for t in REPORT_TYPES_BY_ID.values()
    ]
    return "report types (name or id):\n" + "\n".join(lines)


def _scopes_help() -> str:
    width = max(len(name) for name in SCOPES)
    lines = [f"  {name:<{width}}  {what}" for name, what in sorted(SCOPES.items())]
    return "scopes:\n" + "\n".join(lines)


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
        epilog=_scopes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    service.add_argument("--name", required=True, help="what the caller is, e.g. billing-sync")
    service.add_argument("--client-id", default=None, help="default: svc_<random>")
    service.add_argument("--description", default=None, help="what the caller is, for operators")
    service.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="what the account may do (repeat for several; default: none), see below",
    )
    service.set_defaults(run=_create_service_account)
    scopes = sub.add_parser(
        "set-service-account-scopes",
        help="replace the scopes of a service account",
        epilog=_scopes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scopes.add_argument("client_id")
    scopes.add_argument("--scope", action="append", metavar="SCOPE", help="repeat for several")
    scopes.add_argument("--none", action="store_true", help="take every scope away")
    scopes.set_defaults(run=_set_service_account_scopes)
    sub.add_parser(
        "list-service-accounts", help="list service accounts with their status and scopes"
    ).set_defaults(run=_list_service_accounts)
    export = sub.add_parser(
        "export-user",
        help="write everything held about one customer as JSON (a data subject request)",
    )
    export.add_argument("user_id", type=int, help="the customer's user id")
    export.add_argument(
        "--reason", required=True, help="why, e.g. the request's ticket (audited; no personal data)"
    )
    export.add_argument(
        "--output", "-o", type=Path, default=None, help="a file to write (default: standard output)"
    )
    export.set_defaults(run=_export_user)
    report = sub.add_parser(
        "generate-report",
        help="generate a report (as GenerateReport does) and write its file",
        epilog=_report_types_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("--type", required=True, help="report type name or id, see below")
    report.add_argument(
        "--format", required=True, choices=["csv", "excel", "xlsx", "pdf"], help="file format"
    )
    report.add_argument(
        "--from", dest="start", default=None, help="first day, YYYY-MM-DD (UTC; ranged types)"
    )
    report.add_argument(
        "--to", dest="end", default=None, help="last day, YYYY-MM-DD (UTC; default: today)"
    )
    report.add_argument("--output", required=True, help="where to write the file")
    report.set_defaults(run=_generate_report)
    backup_cli.add_parser(sub, _with_databases)
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
