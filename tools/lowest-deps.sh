#!/usr/bin/env bash
# The test suite against the LOWEST version of every direct dependency pyproject.toml allows.
#
#   tools/lowest-deps.sh                     # the whole suite, embedded PostgreSQL 18
#   tools/lowest-deps.sh tests/test_x.py -q  # arguments go to pytest
#
# pip always picks the newest match and cannot install some lowest versions exactly (no
# psycopg-binary wheel for 3.2.0); uv can (`--resolution lowest-direct`). So: a separate venv
# (.cache/venv-lowest, or $LOWEST_VENV), uv installed into it with pip, then the project
# installed with uv at the lowest versions. uv is given this machine's own pip configuration
# (`pip config list`: index-url, extra-index-url, find-links, cert, constraint), never a host
# name of ours, and pip's rule of picking the best match across every index. The venv is
# rebuilt when pyproject.toml changes; LOWEST_REBUILD=1 forces it.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="${LOWEST_VENV:-$ROOT/.cache/venv-lowest}"
STAMP="$VENV/.installed"

say() { echo "lowest-deps: $*" >&2; }

# uv's options from `pip config list` (lines `scope.key='value'`; the environment's
# `:env:` scope wins over the files, as it does for pip). Multi-valued keys hold
# whitespace-separated values.
uv_options() {
    "$PYTHON" -m pip config list 2>/dev/null | "$PYTHON" -c '
import ast, shlex, sys

rank = {":env:": 3, "site": 2, "user": 1, "global": 0}
best: dict[str, tuple[int, str]] = {}
for line in sys.stdin:
    key, sep, raw = line.strip().partition("=")
    if not sep or "." not in key:
        continue
    scope, name = key.rsplit(".", 1)
    try:
        value = ast.literal_eval(raw)
    except (SyntaxError, ValueError):
        value = raw
    r = rank.get(scope, 0)
    if name not in best or r >= best[name][0]:
        best[name] = (r, str(value))
opts = []
flags = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}
for name, flag in flags.items():
    if name in best:
        for value in best[name][1].split():
            opts += [flag, value]
print(shlex.join(opts))
if "cert" in best:
    print("SSL_CERT_FILE=" + shlex.quote(best["cert"][1]))
'
}

if [ "${LOWEST_REBUILD:-0}" = 1 ] || [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet uv
    config="$(uv_options)"
    eval "opts=($(head -n1 <<<"$config"))"  # shlex-quoted by the parser above
    cert_line="$(sed -n 2p <<<"$config")"
    if [ -n "$cert_line" ]; then
        eval "export $cert_line"
    fi
    say "uv pip install --resolution lowest-direct -e '.[dev,bench]' ${opts[*]}"
    # unsafe-best-match: pip's rule (the best version across all indexes); uv's default
    # stops at the first index that has the package, which may hold only its newest.
    VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" \
        --resolution lowest-direct --index-strategy unsafe-best-match \
        "${opts[@]}" -e '.[dev,bench]'
    touch "$STAMP"
fi

"$VENV/bin/python" -m pip list 2>/dev/null \
    | grep -i -E '^(psycopg|psycopg-binary|psycopg-pool|pglast|click|rich|pytest|matplotlib) ' >&2 || true
say "pytest ${*:-(the whole suite)}"
exec "$VENV/bin/python" -m pytest "$@"
