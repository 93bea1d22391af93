"""The ``tenantguard`` command line: a thin layer over the library.

Exit codes: 0 success, 1 an isolation claim or check failed, 2 usage, connection
or configuration error (a message that says what to do, no traceback).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from tenantguard._cli_util import err, folded, handled, out

dsn_option = click.option(
    "--dsn",
    envvar="TENANTGUARD_DSN",
    required=True,
    help="Administrator DSN, e.g. postgresql://postgres@127.0.0.1/app (env TENANTGUARD_DSN).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tenantguard")
def main() -> None:
    """tenantguard: tenant isolation in PostgreSQL as a database guarantee.

    \b
    Quick start:
      tenantguard demo                       # on an embedded PostgreSQL
      tenantguard install --dsn ADMIN_DSN --app-role app_user --owner-role app_owner
      tenantguard protect app.invoices app.projects --dsn ADMIN_DSN

    \b
    Proof (exit 0 clean, 1 findings, 2 error; --format human|json|sarif|html):
      tenantguard lint migrations/
      tenantguard audit --dsn ADMIN_DSN --app-role app_user
      tenantguard probe --dsn ADMIN_DSN --app-role app_user
    """
    import logging

    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_time=False, show_path=False)],
    )


@main.command()
@dsn_option
@click.option("--app-role", required=True, help="Runtime role the application logs in as.")
@click.option("--owner-role", required=True, help="NOLOGIN role that owns the tenant tables.")
@click.option("--setting", default="app.tenant_id", show_default=True, help="Tenant setting.")
@click.option("--user-setting", default="app.user_id", show_default=True, help="User setting.")
@click.option("--tenant-column", default="tenant_id", show_default=True)
@click.option(
    "--allow-temp",
    is_flag=True,
    help="Keep TEMPORARY on the database for PUBLIC and the app role (by default it is "
    "revoked: temporary views, domains and functions left on a pooled connection run inside "
    "the next tenant's statements). Pools must then be created with allow_temp=True and "
    "verify every checkin.",
)
@click.option(
    "--keep-activity-tracking",
    is_flag=True,
    help="Leave track_activities on for the app role (by default it is turned off where the "
    "admin may: sessions of one login see each other's statements in pg_stat_activity).",
)
@click.option(
    "--signed",
    is_flag=True,
    help="Policies believe only a signed tenant context (then: tenantguard keys create).",
)
@click.option(
    "--key-owner-role",
    default=None,
    help="With --signed: NOLOGIN role owning the key table [default: <owner role>_keys].",
)
@click.option("--dry-run", is_flag=True, help="Print the SQL, change nothing.")
@handled
def install(
    dsn: str,
    app_role: str,
    owner_role: str,
    setting: str,
    user_setting: str,
    tenant_column: str,
    allow_temp: bool,
    keep_activity_tracking: bool,
    signed: bool,
    key_owner_role: str | None,
    dry_run: bool,
) -> None:
    """Create the tenantguard schema, the fail-closed helpers and the roles (idempotent).

    Refuses, changing nothing, when the app role is superuser, has BYPASSRLS, owns
    tenant tables or is a member of the owner role. Revokes TEMPORARY on the database
    from PUBLIC and the app role unless --allow-temp (run it as the database's owner).
    """
    from tenantguard.admin import admin_connect
    from tenantguard.admin import install as do_install
    from tenantguard.core.sqlbuild import InstallSpec

    spec = InstallSpec(
        app_role=app_role,
        owner_role=owner_role,
        setting=setting,
        user_setting=user_setting,
        allow_temp=allow_temp,
        keep_activity=keep_activity_tracking,
        signed=signed,
        key_owner_role=key_owner_role,
    )
    with admin_connect(dsn, autocommit=True) as conn:
        result = do_install(conn, spec, tenant_column=tenant_column, dry_run=dry_run)
    if dry_run:
        out.print("\n".join(result.statements), highlight=False, soft_wrap=True, markup=False)
        err.print("[dim]dry run: nothing changed[/]")
        return
    for role in result.created_roles:
        err.print(f"created role [bold]{escape(role)}[/]", highlight=False)
    for note in result.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    err.print(
        f"[green]installed[/] tenantguard helpers reading [bold]{escape(setting)}[/] "
        f"({len(result.statements)} statements)"
    )
    if signed:
        err.print(
            "signed contexts only: create a key with [bold]tenantguard keys create[/], give it "
            "to the application (TENANTGUARD_SIGNING_KEY), and run [bold]protect[/] again on "
            "tables protected before, so their policies read the verifying view"
        )


@main.group()
def keys() -> None:
    """Signing keys for signed tenant contexts (install --signed).

    \b
    tenantguard keys create --dsn ADMIN     # the first key; prints it once
    tenantguard keys rotate --dsn ADMIN     # a successor; both are valid while rolling
    tenantguard keys retire KEY_ID --dsn ADMIN
    tenantguard keys list --dsn ADMIN
    """


def _print_key(key: Any, note: str) -> None:
    # The only place a secret is ever shown: stdout, once, for the caller to store.
    out.print(f"TENANTGUARD_SIGNING_KEY={key.export()}", highlight=False, soft_wrap=True)
    err.print(
        f"[green]{note}[/] key [bold]{key.key_id}[/]: store the line above as the "
        "application's secret; it is not shown again"
    )


schema_option = click.option(
    "--schema", default="tenantguard", show_default=True, help="Helper schema of install."
)


@keys.command("create")
@dsn_option
@schema_option
@handled
def keys_create(dsn: str, schema: str) -> None:
    """Create the first signing key and print TENANTGUARD_SIGNING_KEY=<key id>:<secret>."""
    from tenantguard.admin import admin_connect, create_key

    with admin_connect(dsn, autocommit=True) as conn:
        key = create_key(conn, schema)
    _print_key(key, "created")


@keys.command("rotate")
@dsn_option
@schema_option
@handled
def keys_rotate(dsn: str, schema: str) -> None:
    """Add a successor key (the old one stays valid until retired) and print it."""
    from tenantguard.admin import admin_connect, rotate_key

    with admin_connect(dsn, autocommit=True) as conn:
        key = rotate_key(conn, schema)
    _print_key(key, "added")
    err.print("deploy it to every application instance, then: tenantguard keys retire OLD_KEY_ID")


@keys.command("retire")
@click.argument("key_id")
@dsn_option
@schema_option
@click.option("--force", is_flag=True, help="Retire the last live key (refuses all requests).")
@handled
def keys_retire(key_id: str, dsn: str, schema: str, force: bool) -> None:
    """Stop accepting contexts signed with KEY_ID."""
    from tenantguard.admin import admin_connect, retire_key

    with admin_connect(dsn, autocommit=True) as conn:
        info = retire_key(conn, key_id, schema, force=force)
    err.print(f"[green]retired[/] key [bold]{info.key_id}[/] at {info.retired_at}")


@keys.command("list")
@dsn_option
@schema_option
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human")
@handled
def keys_list(dsn: str, schema: str, fmt: str) -> None:
    """Key ids, when they were created and retired (never the secrets)."""
    from tenantguard.admin import admin_connect, list_keys

    with admin_connect(dsn, autocommit=True) as conn:
        infos = list_keys(conn, schema)
    if fmt == "json":
        rows = [
            {
                "key_id": k.key_id,
                "created_at": k.created_at.isoformat(),
                "retired_at": k.retired_at.isoformat() if k.retired_at else None,
                "live": k.live,
            }
            for k in infos
        ]
        out.print(json.dumps(rows), highlight=False, soft_wrap=True)
        return
    table = Table("key id", "created", "retired")
    for k in infos:
        table.add_row(k.key_id, str(k.created_at), str(k.retired_at) if k.retired_at else "live")
    out.print(folded(table))


@main.command()
@click.argument("tables", nargs=-1, required=True)
@dsn_option
@click.option(
    "--tenant-column",
    "tenant_columns",
    multiple=True,
    metavar="COLUMN | SCHEMA.TABLE=COLUMN",
    help="The tenant column (default tenant_id), and per-table keys where a table names it "
    "otherwise, e.g. the tenant root table public.companies=id (repeatable).",
)
@click.option("--user-column", default=None, help="Column holding the owning user id.")
@click.option(
    "--user-scope",
    type=click.Choice(["write", "all"]),
    default="write",
    show_default=True,
    help="With --user-column: restrict writes only, or reads too.",
)
@click.option(
    "--grant-to",
    default=None,
    help="Also GRANT SELECT/INSERT/UPDATE/DELETE to ROLE, and USAGE on the sequences "
    "behind serial columns.",
)
@click.option(
    "--role-scope",
    is_flag=True,
    help="Policies key on the session's login: per-tenant logins (tenantguard credentials) and "
    "break-glass grants (tenantguard admin); other logins use the bound setting.",
)
@click.option("--dry-run", is_flag=True, help="Print the SQL, change nothing.")
@handled
def protect(
    tables: tuple[str, ...],
    dsn: str,
    tenant_columns: tuple[str, ...],
    user_column: str | None,
    user_scope: str,
    grant_to: str | None,
    role_scope: bool,
    dry_run: bool,
) -> None:
    """Protect SCHEMA.TABLE... with ENABLE + FORCE RLS and tenant policies (idempotent).

    Adds a RESTRICTIVE tenant guard (USING and WITH CHECK) plus a permissive access
    policy, optional user-level policies, and the (tenant_id, pk) index.
    """
    from tenantguard.admin import admin_connect, runtime_grants
    from tenantguard.admin import protect as do_protect
    from tenantguard.core.names import QualifiedName
    from tenantguard.core.sqlbuild import render
    from tenantguard.tooling.config import load_config, parse_tenant_columns

    cfg = load_config()
    default, mapping = parse_tenant_columns(tenant_columns)
    per_table: dict[str | QualifiedName, str] = {}
    per_table.update(cfg.tenant_columns)
    per_table.update(mapping)
    with admin_connect(dsn, autocommit=True) as conn:
        result = do_protect(
            conn,
            list(tables),
            tenant_column=default or cfg.tenant_column or "tenant_id",
            tenant_columns=per_table,
            user_column=user_column,
            user_scope=user_scope,  # type: ignore[arg-type]
            role_scope=role_scope,
            dry_run=dry_run,
        )
        grants: list[str] = []
        if grant_to:
            stmts = runtime_grants(conn, tables, grant_to)  # with the serial sequences
            grants = [render(s) + ";" for s in stmts]
            if not dry_run:
                with conn.transaction():
                    for s in stmts:
                        conn.execute(s)
    for w in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    if dry_run:
        text = "\n".join(result.scope_statements + result.statements + grants)
        out.print(text or "-- nothing to do", highlight=False, soft_wrap=True, markup=False)
        err.print("[dim]dry run: nothing changed[/]")
        return
    for plan in result.tables:
        state = f"{len(plan.statements)} statements" if plan.statements else "already protected"
        err.print(f"[green]protected[/] {escape(str(plan.spec.table))} ({state})", highlight=False)


@main.command()
@click.option(
    "--dsn",
    envvar="TENANTGUARD_DSN",
    default=None,
    help="Superuser DSN; default: embedded PostgreSQL.",
)
@click.option("--keep", is_flag=True, help="Keep the demo database and roles afterwards.")
@click.option("--json", "as_json", is_flag=True, help="Print the claims as JSON on stdout.")
@handled
def demo(dsn: str | None, keep: bool, as_json: bool) -> None:
    """Show a forgotten WHERE leaking, and tenantguard stopping it, on a real database.

    Without --dsn an embedded PostgreSQL is started in a temporary directory and
    removed on exit. Exits 1 if any isolation claim it shows turns out false.
    """
    from contextlib import nullcontext

    from tenantguard.demo import run_demo
    from tenantguard.embedded import embedded_postgres

    source = "your server" if dsn else "an embedded PostgreSQL"
    server = nullcontext(dsn) if dsn else embedded_postgres()
    with err.status(f"running the demo on {source}..."), server as target:
        result = run_demo(target, keep=keep)
    if as_json:
        payload = {
            "ok": result.ok,
            "server_version": result.server_version,
            "claims": [c.__dict__ for c in result.claims],
            "refused": result.refused,
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        table = Table(
            title=f"tenantguard demo (PostgreSQL {result.server_version})", show_lines=True
        )
        table.add_column("claim", style="bold")
        table.add_column("plain connection", style="red")
        table.add_column("through tenantguard", style="green")
        table.add_column("verdict")
        for c in result.claims:
            table.add_row(c.claim, c.plain, c.guarded, "[green]PASS[/]" if c.ok else "[red]FAIL[/]")
        out.print(folded(table))
        err.print(
            "[dim]plain connection: each attack run as the runtime role on a plain psycopg "
            "connection (or psycopg_pool) before protect (no tenant bound: after), writes "
            "in a transaction rolled back; through tenantguard: the same attack through "
            "TenantPool after protect.[/]",
            highlight=False,
        )
        for line in result.refused:  # the pooled-connection claim, explained
            err.print(f"[dim]refused: {escape(line)}[/]", highlight=False)
    if not result.ok:
        err.print("[bold red]an isolation claim was false[/]")
        sys.exit(1)


@main.command()
@click.option(
    "--dsn",
    envvar="TENANTGUARD_DSN",
    default=None,
    help="Superuser DSN; default: embedded PostgreSQL.",
)
@click.option("--tenants", default=10_000, show_default=True, type=click.IntRange(1))
@click.option("--rows-per-tenant", default=100, show_default=True, type=click.IntRange(1))
@click.option(
    "--clients", default="1,4,16", show_default=True, help="Comma-separated client counts."
)
@click.option(
    "--duration",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.05, 60),
    help="Seconds per cell per round.",
)
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option(
    "--output",
    default="bench",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory for JSON and plots.",
)
@click.option(
    "--markdown",
    default="BENCHMARKS.md",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Report regenerated from every results file in --output.",
)
@click.option("--no-pgbouncer", is_flag=True, help="Skip the PgBouncer group.")
@click.option(
    "--no-pgbench",
    is_flag=True,
    help="Skip the server-side measurement with pgbench (a C client; run when installed).",
)
@click.option(
    "--no-signed",
    is_flag=True,
    help="Skip the signed-context group (it builds a second database, <database>_signed).",
)
@click.option(
    "--pgbouncer",
    default=None,
    metavar="PATH",
    help="PgBouncer binary for the PgBouncer group (in a checkout, make pgbouncer builds "
    "1.24.1); default: $TENANTGUARD_PGBOUNCER, else pgbouncer on PATH or /usr/sbin/pgbouncer.",
)
@click.option(
    "--report-only",
    is_flag=True,
    help="Only regenerate --markdown and plots from the JSON already in --output.",
)
@handled
def bench(
    dsn: str | None,
    tenants: int,
    rows_per_tenant: int,
    clients: str,
    duration: float,
    rounds: int,
    output: str,
    markdown: str,
    no_pgbouncer: bool,
    no_pgbench: bool,
    no_signed: bool,
    pgbouncer: str | None,
    report_only: bool,
) -> None:
    """Measure the cost of isolation side by side and write BENCHMARKS.md.

    Builds TENANTS x ROWS-PER-TENANT rows server-side (reused across runs), runs every
    variant interleaved in rounds, counts round trips, and checks the targets.
    Load goes to the given server (or the embedded one) only; every loop is bounded.
    Needs the bench extra: pip install 'tenantguard[bench]'.
    """
    from tenantguard.bench import EXTRA_HINT, missing_extra

    missing = missing_extra(embedded=dsn is None and not report_only)
    if missing:  # before the harness is imported: exit 2 with the install hint
        err.print(
            f"error: tenantguard bench needs the bench extra ({', '.join(missing)} not installed)",
            markup=False,
            highlight=False,
        )
        err.print(f"hint: {EXTRA_HINT}", markup=False, highlight=False)
        sys.exit(2)

    from contextlib import nullcontext
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tenantguard.bench.report import load_results, plot, write_markdown
    from tenantguard.bench.run import BenchConfig, run_bench, save
    from tenantguard.embedded import embedded_postgres
    from tenantguard.testing.pgbouncer import find_pgbouncer, pgbouncer_version

    try:
        client_list = sorted({int(c) for c in clients.split(",") if c.strip()})
    except ValueError:
        raise click.BadParameter("use a comma-separated list of integers, e.g. 1,4,16") from None
    if not client_list or min(client_list) < 1 or max(client_list) > 64:
        raise click.BadParameter("client counts must be between 1 and 64")
    out_dir = Path(output)
    if report_only:
        existing = load_results(out_dir)
        if not existing:
            raise click.UsageError(f"no results-*.json in {out_dir}; run the benchmark first")
        for res in existing:
            plot(res, out_dir)
        write_markdown(existing, out_dir, Path(markdown), rel=output)
        err.print(f"regenerated {markdown} from {len(existing)} result file(s)")
        return
    if pgbouncer and no_pgbouncer:
        raise click.UsageError("--pgbouncer and --no-pgbouncer exclude each other")
    bouncer_binary = None
    if not no_pgbouncer:
        try:  # before any server starts: a wrong binary is a usage error, not a crash later
            bouncer_binary = find_pgbouncer(pgbouncer)
            if bouncer_binary is not None:
                pgbouncer_version(bouncer_binary)
        except (FileNotFoundError, RuntimeError) as exc:
            raise click.BadParameter(str(exc), param_hint="--pgbouncer") from None
        if bouncer_binary is None:
            err.print(
                "[yellow]no pgbouncer found: the PgBouncer group is skipped[/] (--pgbouncer PATH"
                " or TENANTGUARD_PGBOUNCER; in a checkout, make pgbouncer builds 1.24.1)"
            )
    if not no_pgbench:
        from tenantguard.bench.pgbench import find_pgbench

        if find_pgbench() is None:
            err.print(
                "[yellow]no pgbench found: the server-side measurement is skipped[/]"
                " (Debian: apt-get install -y postgresql-15; postgresql-client has only a wrapper)"
            )
    command = (
        "tenantguard bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "tenantguard bench"
    )
    server = nullcontext(dsn) if dsn else embedded_postgres(share_socket=True)
    with (
        server as target,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
        ) as bar,
    ):
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        cfg = BenchConfig(
            dsn=target,
            tenants=tenants,
            rows_per_tenant=rows_per_tenant,
            clients=client_list,
            seconds=duration,
            rounds=rounds,
            output=out_dir,
            pgbouncer=bouncer_binary is not None,
            pgbouncer_binary=bouncer_binary,
            pgbench=not no_pgbench,
            signed=not no_signed,
            command=command,
        )
        results = run_bench(cfg, progress=progress)
    path = save(results, out_dir)
    path = path.rename(out_dir / f"results-{tenants}x{rows_per_tenant}.json")
    plot(results, out_dir)
    write_markdown(load_results(out_dir), out_dir, Path(markdown), rel=output)
    table = Table(title=f"targets ({tenants}x{rows_per_tenant})")
    for col in ("target", "value", "goal", "met"):
        table.add_column(col)
    for t in results["targets"]:
        v = t["value"]
        table.add_row(
            t["target"],
            f"{v:.3f}" if isinstance(v, float) else str(v),
            t["goal"],
            {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[t["met"]],
        )
    out.print(folded(table))
    err.print(f"wrote {path}, plots and {markdown}")


def _register_tools() -> None:
    from tenantguard._cli_access import admin_group, credentials_group
    from tenantguard.tooling.audit.cli import audit_command
    from tenantguard.tooling.lint.cli import lint_command
    from tenantguard.tooling.probe.cli import probe_command

    main.add_command(audit_command, "audit")
    main.add_command(lint_command, "lint")
    main.add_command(probe_command, "probe")
    main.add_command(credentials_group, "credentials")
    main.add_command(admin_group, "admin")


_register_tools()

if __name__ == "__main__":
    main()
