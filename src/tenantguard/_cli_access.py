"""``tenantguard credentials ...`` and ``tenantguard admin ...``: thin layers over
:mod:`tenantguard.admin.credentials` and :mod:`tenantguard.admin.breakglass`.

Secrets go to stdout only (the command's output); stderr carries status lines, which
never include a password.
"""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from tenantguard._cli_util import err, folded, handled, out

__all__ = ["admin_group", "credentials_group"]

_dsn = click.option(
    "--dsn",
    envvar="TENANTGUARD_DSN",
    required=True,
    help="Administrator DSN (NOSUPERUSER CREATEROLE, member of the owner role is enough).",
)
_schema = click.option(
    "--schema", default="tenantguard", show_default=True, help="tenantguard's helper schema."
)


@click.group("credentials")
def credentials_group() -> None:
    """Short-lived per-tenant database logins (tables need `protect --role-scope`).

    \b
      tenantguard credentials issue 42 --dsn ADMIN --ttl 15m --format json
      tenantguard credentials list --dsn ADMIN
      tenantguard credentials revoke 42 --dsn ADMIN
      tenantguard credentials sweep --dsn ADMIN     # drop expired logins
    """


@credentials_group.command("issue")
@click.argument("tenant")
@_dsn
@click.option("--ttl", default="15m", show_default=True, help="Lifetime: 90s, 15m, 1h, 2d.")
@click.option(
    "--slot",
    default="default",
    show_default=True,
    help="One login per slot and tenant; give each issuer (app instance) its own.",
)
@click.option(
    "--tenant-kind",
    type=click.Choice(["int", "bigint", "uuid", "text"]),
    default=None,
    help="Validate TENANT as this kind (default: as text).",
)
@click.option("--role-prefix", default=None, help="Role name prefix (default: tg<database oid>).")
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human")
@_schema
@handled
def issue(
    tenant: str,
    dsn: str,
    ttl: str,
    slot: str,
    tenant_kind: str | None,
    role_prefix: str | None,
    fmt: str,
    schema: str,
) -> None:
    """Create or refresh TENANT's login: a new random password and VALID UNTIL now + TTL.

    Prints {"user", "password", "valid_until", "dsn"} with --format json (the dsn has
    no password: pass it as PGPASSWORD or password=).
    """
    from tenantguard.admin import admin_connect
    from tenantguard.admin.credentials import issue_credential

    with admin_connect(dsn, autocommit=True) as conn:
        cred = issue_credential(
            conn,
            tenant,
            ttl=ttl,
            slot=slot,
            tenant_kind=tenant_kind,  # type: ignore[arg-type]
            schema=schema,
            role_prefix=role_prefix,
        )
    if fmt == "json":
        click.echo(json.dumps(cred.as_dict()))
    else:
        click.echo(f"user={cred.user}")
        click.echo(f"password={cred.password}")
        click.echo(f"valid_until={cred.valid_until.isoformat()}")
        click.echo(f"dsn={cred.dsn}")
    err.print(
        f"[green]issued[/] login [bold]{cred.user}[/] for tenant {cred.tenant}", highlight=False
    )


@credentials_group.command("revoke")
@click.argument("tenant")
@_dsn
@click.option("--tenant-kind", type=click.Choice(["int", "bigint", "uuid", "text"]), default=None)
@_schema
@handled
def revoke(tenant: str, dsn: str, tenant_kind: str | None, schema: str) -> None:
    """Revoke every login of TENANT: its scope ends at once; the roles are dropped."""
    from tenantguard.admin import admin_connect
    from tenantguard.admin.credentials import revoke_credentials

    with admin_connect(dsn, autocommit=True) as conn:
        res = revoke_credentials(conn, tenant, tenant_kind=tenant_kind, schema=schema)  # type: ignore[arg-type]
    _report_retired("revoked", res.logins, res.dropped, res.disabled, res.terminated)


@credentials_group.command("sweep")
@_dsn
@_schema
@handled
def sweep(dsn: str, schema: str) -> None:
    """Drop the roles of expired (and revoked) logins."""
    from tenantguard.admin import admin_connect
    from tenantguard.admin.credentials import sweep_credentials

    with admin_connect(dsn, autocommit=True) as conn:
        res = sweep_credentials(conn, schema=schema)
    _report_retired("swept", res.logins, res.dropped, res.disabled, res.terminated)


def _report_retired(
    verb: str, logins: list[str], dropped: list[str], disabled: list[str], terminated: int
) -> None:
    for name in dropped:
        click.echo(f"dropped {name}")
    for name in disabled:
        click.echo(f"disabled {name} (owns objects; NOLOGIN, no password, no membership)")
    err.print(
        f"{verb} {len(logins)} login(s); {len(dropped)} dropped, {len(disabled)} disabled, "
        f"{terminated} session(s) terminated",
        highlight=False,
    )


@credentials_group.command("list")
@_dsn
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human")
@_schema
@handled
def list_(dsn: str, fmt: str, schema: str) -> None:
    """Every per-tenant login and its state (live, expired, revoked). No passwords."""
    from tenantguard.admin import admin_connect
    from tenantguard.admin.credentials import list_credentials

    with admin_connect(dsn, autocommit=True) as conn:
        rows = list_credentials(conn, schema=schema)
    if fmt == "json":
        click.echo(
            json.dumps(
                [
                    {
                        "user": r.login,
                        "tenant": r.tenant,
                        "slot": r.slot,
                        "valid_until": r.valid_until.isoformat(),
                        "state": r.state,
                        "role_exists": r.role_exists,
                    }
                    for r in rows
                ]
            )
        )
        return
    table = Table(title="per-tenant logins")
    for col in ("user", "tenant", "slot", "valid until", "state", "role"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.login,
            r.tenant,
            r.slot,
            r.valid_until.isoformat(timespec="seconds"),
            r.state,
            "exists" if r.role_exists else "dropped",
        )
    out.print(folded(table))


@click.group("admin")
def admin_group() -> None:
    """Audited break-glass access across tenants (tables need `protect --role-scope`).

    \b
      tenantguard admin grant --dsn ADMIN --to support_alice --tenant 7 \\
          --reason 'invoice dispute' --ticket SUP-1234 --ttl 10m
      tenantguard admin log --dsn ADMIN
      tenantguard admin verify --dsn ADMIN     # exit 0 intact, 1 tampered
    """


@admin_group.command("grant")
@_dsn
@click.option("--to", "grantee", required=True, help="An existing, dedicated LOGIN role.")
@click.option("--tenant", "tenants", multiple=True, required=True, help="Tenant id (repeatable).")
@click.option("--reason", required=True, help="Why access is needed (logged).")
@click.option("--ticket", required=True, help="Ticket reference (logged).")
@click.option("--ttl", default="10m", show_default=True, help="Lifetime, at most 24h.")
@click.option("--write", is_flag=True, help="Also INSERT/UPDATE/DELETE (default: read only).")
@_schema
@handled
def grant(
    dsn: str,
    grantee: str,
    tenants: tuple[str, ...],
    reason: str,
    ticket: str,
    ttl: str,
    write: bool,
    schema: str,
) -> None:
    """Give ROLE access to the tenants' rows for TTL; appended to the log atomically."""
    from tenantguard.admin import admin_connect
    from tenantguard.admin.breakglass import grant_access

    with admin_connect(dsn, autocommit=True) as conn:
        g = grant_access(
            conn,
            grantee,
            list(tenants),
            reason=reason,
            ticket=ticket,
            ttl=ttl,
            write=write,
            schema=schema,
        )
    click.echo(
        json.dumps(
            {
                "grant": g.seq,
                "to": g.grantee,
                "tenants": list(g.tenants),
                "write": g.write,
                "expires_at": g.expires_at.isoformat(),
            }
        )
    )
    err.print(
        f"[green]granted[/] #{g.seq}: {g.grantee} may {'read and write' if g.write else 'read'} "
        f"tenant(s) {', '.join(g.tenants)} until {g.expires_at.isoformat(timespec='seconds')}",
        highlight=False,
    )


@admin_group.command("revoke")
@click.argument("grant_id", type=int)
@_dsn
@click.option("--reason", required=True, help="Why the grant ends early (logged).")
@_schema
@handled
def revoke_grant(grant_id: int, dsn: str, reason: str, schema: str) -> None:
    """End grant GRANT_ID now (appends a revoke row to the log)."""
    from tenantguard.admin import admin_connect
    from tenantguard.admin.breakglass import revoke_access

    with admin_connect(dsn, autocommit=True) as conn:
        seq = revoke_access(conn, grant_id, reason=reason, schema=schema)
    err.print(f"[green]revoked[/] grant #{grant_id} (log row #{seq})", highlight=False)


@admin_group.command("log")
@_dsn
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human")
@_schema
@handled
def show_log(dsn: str, fmt: str, schema: str) -> None:
    """The break-glass log, oldest first, and its head (record it to anchor `verify`)."""
    from tenantguard.admin import admin_connect
    from tenantguard.admin.breakglass import read_log

    with admin_connect(dsn, autocommit=True) as conn:
        rows = read_log(conn, schema=schema)
    if fmt == "json":
        click.echo(
            json.dumps(
                [
                    {
                        "seq": r.seq,
                        "at": r.at.isoformat(),
                        "actor": r.actor,
                        "action": r.action,
                        "grant": r.grant_seq,
                        "to": r.grantee,
                        "tenants": list(r.tenants),
                        "write": r.can_write,
                        "reason": r.reason,
                        "ticket": r.ticket,
                        "expires_at": r.expires_at.isoformat(),
                        "state": r.state,
                        "hash": r.hash,
                    }
                    for r in rows
                ]
            )
        )
        return
    table = Table(title="break-glass log")
    for col in ("#", "at", "by", "action", "to", "tenants", "mode", "reason", "ticket", "state"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r.seq),
            r.at.isoformat(timespec="seconds"),
            r.actor,
            r.action if r.grant_seq is None else f"revoke #{r.grant_seq}",
            r.grantee,
            ", ".join(r.tenants),
            "write" if r.can_write else "read",
            r.reason,
            r.ticket,
            r.state,
        )
    out.print(folded(table))
    if rows:
        err.print(f"head: {rows[-1].seq}:{rows[-1].hash}", highlight=False)


@admin_group.command("verify")
@_dsn
@click.option("--anchor", default=None, metavar="SEQ:HASH", help="A head recorded earlier.")
@_schema
@handled
def verify(dsn: str, anchor: str | None, schema: str) -> None:
    """Recompute the log's hash chain: exit 0 intact, 1 tampered, 2 could not check."""
    from tenantguard.admin import admin_connect
    from tenantguard.admin.breakglass import verify_log

    parsed: tuple[int, str] | None = None
    if anchor is not None:
        seq_text, _, digest = anchor.partition(":")
        if not seq_text.isdigit() or len(digest) != 64:
            raise click.BadParameter(
                "use SEQ:HASH as printed by `admin log`", param_hint="--anchor"
            )
        parsed = (int(seq_text), digest.lower())
    with admin_connect(dsn, autocommit=True) as conn:
        res = verify_log(conn, schema=schema, anchor=parsed)
    if res.intact:
        click.echo(f"intact: {res.rows} row(s), head {res.head}")
        return
    for p in res.problems:
        click.echo(f"TAMPERED: {p}")
    err.print(
        f"[bold red]the break-glass log was tampered with[/] ({len(res.problems)} problem(s))"
    )
    sys.exit(1)
