"""Generate the sync driver modules from their async sources (psycopg's own approach).

    .venv/bin/python tools/async_to_sync.py          # write the sync modules
    .venv/bin/python tools/async_to_sync.py --check  # exit 1 if one is out of date (CI)

The async module is the one to edit. The transformation is on the syntax tree:
``async def`` / ``async with`` / ``async for`` lose ``async``, ``await x`` becomes ``x``,
names are renamed by :data:`RENAMES` (``AsyncTenantPool`` -> ``TenantPool``,
``asyncio.current_task`` -> ``threading.get_ident``...), and a block written as
``if _ASYNC: <async-only> else: <sync-only>`` keeps only its ``else`` branch. Comments
are carried over (``ast_comments``); the module docstring's paragraph that starts "This is
the source" becomes a note of where the file comes from, and ``ruff format`` lays it out.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import ast_comments  # the syntax tree with its comments (psycopg's tool uses it too)

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "src" / "tenantguard" / "drivers" / "psycopg"
PAIRS = [
    (DRIVER / "_connection_async.py", DRIVER / "_connection.py"),
    (DRIVER / "_pool_async.py", DRIVER / "_pool.py"),
    (DRIVER / "_credential_pool_async.py", DRIVER / "_credential_pool.py"),
]

RENAMES = {
    # tenantguard
    "AsyncTenantConnection": "TenantConnection",
    "AsyncTenantCursor": "TenantCursor",
    "AsyncTenantServerCursor": "TenantServerCursor",
    "AsyncTenantPool": "TenantPool",
    "_AsyncLease": "_Lease",
    "_connection_async": "_connection",
    "AsyncCredentialPool": "CredentialPool",
    "AnySource": "CredentialSource",  # the sync pool takes sync sources only
    "_credential_pool_async": "_credential_pool",
    # psycopg and psycopg_pool
    "AsyncConnection": "Connection",
    "AsyncCursor": "Cursor",
    "AsyncServerCursor": "ServerCursor",
    "AsyncTransaction": "Transaction",
    "AsyncPipeline": "Pipeline",
    "AsyncCopy": "Copy",
    "AsyncConnectionPool": "ConnectionPool",
    # the standard library
    "asynccontextmanager": "contextmanager",
    "AsyncIterator": "Iterator",
    "AsyncGenerator": "Generator",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__anext__": "__next__",
    "aclose": "close",
    "_pool_async": "_pool",
}
ATTR_RENAMES = {
    ("asyncio", "current_task"): ("threading", "get_ident"),
    # same methods, but threading's wait() takes a timeout: asyncio's is in an `if _ASYNC:`
    ("asyncio", "Condition"): ("threading", "Condition"),
    ("asyncio", "Lock"): ("threading", "Lock"),
}
MODULE_RENAMES = {"asyncio": "threading"}
DOC_RENAMES = {
    **{k: v for k, v in RENAMES.items() if k[0].isupper() or k.startswith("_A")},
    "``async with ": "``with ",
    "async with ": "with ",
    "``await pool.open()``": "``pool.open()``",
    "await ": "",
    "asyncio task": "thread",
    " (asyncio)": "",
}


def _doc(text: str) -> str:
    for old, new in DOC_RENAMES.items():
        text = text.replace(old, new)
    return text


class AsyncToSync(ast.NodeTransformer):
    """The syntax-tree transformation: async constructs and names to their sync twins."""

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        new = ast.FunctionDef(
            name=RENAMES.get(node.name, node.name),
            args=node.args,
            body=node.body,
            decorator_list=node.decorator_list,
            returns=node.returns,
            type_comment=node.type_comment,
            type_params=getattr(node, "type_params", []),
        )
        ast.copy_location(new, node)
        return self.generic_visit(new)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = RENAMES.get(node.name, node.name)
        return self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.name = RENAMES.get(node.name, node.name)
        return self.generic_visit(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> ast.AST:
        new = ast.With(items=node.items, body=node.body, type_comment=node.type_comment)
        ast.copy_location(new, node)
        return self.generic_visit(new)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> ast.AST:
        new = ast.For(
            target=node.target,
            iter=node.iter,
            body=node.body,
            orelse=node.orelse,
            type_comment=node.type_comment,
        )
        ast.copy_location(new, node)
        return self.generic_visit(new)

    def visit_Await(self, node: ast.Await) -> ast.AST:
        return self.visit(node.value)

    def visit_If(self, node: ast.If) -> ast.AST | list[ast.stmt]:
        if isinstance(node.test, ast.Name) and node.test.id == "_ASYNC":
            return [self.visit(stmt) for stmt in node.orelse]  # the sync branch only
        return self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> ast.AST | None:
        targets = [t for t in node.targets if isinstance(t, ast.Name)]
        if targets and targets[0].id == "_ASYNC":
            return None  # the marker itself
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = RENAMES.get(node.id, node.id)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if isinstance(node.value, ast.Name):
            key = (node.value.id, node.attr)
            if key in ATTR_RENAMES:
                mod, attr = ATTR_RENAMES[key]
                return ast.copy_location(
                    ast.Attribute(value=ast.Name(id=mod, ctx=ast.Load()), attr=attr, ctx=node.ctx),
                    node,
                )
        node.attr = RENAMES.get(node.attr, node.attr)
        return self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> ast.AST:
        for alias in node.names:
            alias.name = MODULE_RENAMES.get(alias.name, alias.name)
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.module:
            node.module = ".".join(RENAMES.get(p, p) for p in node.module.split("."))
        for alias in node.names:
            alias.name = RENAMES.get(alias.name, alias.name)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, str):
            node.value = _doc(node.value)
        return node


_SOURCE_NOTE = re.compile(r"This is the source.*?(?:\n\n|\Z)", re.S)


def convert(source: Path, target: Path) -> str:
    tree = ast_comments.parse(source.read_text())
    doc = ast.get_docstring(tree, clean=False)
    tree = AsyncToSync().visit(tree)
    if doc is not None:  # the docstring as the generated module should say it
        note = (
            f"Generated from :mod:`.{source.stem}` by ``tools/async_to_sync.py``: edit that\n"
            "file, then run the tool (``make lint`` checks that they agree).\n\n"
        )
        first = tree.body[0]
        assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
        first.value.value = _SOURCE_NOTE.sub(note, _doc(doc), count=1).rstrip() + "\n"
    ast.fix_missing_locations(tree)
    header = (
        f"# WARNING: this file is generated from {source.name} by tools/async_to_sync.py.\n"
        "# Edit the async source and run the tool; CI checks that they agree.\n"
    )
    code = header + ast_comments.unparse(tree) + "\n"
    formatted = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(target), "-"],
        input=code,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    fixed = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--fix-only",
            "--select",
            "I,F401",
            "--stdin-filename",
            str(target),
            "-",
        ],
        input=formatted,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    ).stdout
    return subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(target), "-"],
        input=fixed or formatted,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a sync module is stale")
    args = ap.parse_args()
    stale = []
    for source, target in PAIRS:
        code = convert(source, target)
        if args.check:
            if not target.exists() or target.read_text() != code:
                stale.append(target)
        else:
            target.write_text(code)
            print(f"wrote {target.relative_to(ROOT)}")
    for target in stale:
        print(
            f"{target.relative_to(ROOT)} is out of date: run tools/async_to_sync.py",
            file=sys.stderr,
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
