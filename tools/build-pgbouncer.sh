#!/usr/bin/env bash
# Build PgBouncer 1.24.1 (Debian trixie's source) into .cache/pgbouncer-1.24.1/ of this repo.
#
#   tools/build-pgbouncer.sh        # prints the binary's path on stdout; a no-op once built
#
# Debian bookworm ships PgBouncer 1.18, which cannot keep prepared statements in transaction
# mode; 1.21+ can (max_prepared_statements), and 1.22+ also tracks DISCARD ALL, which
# tenantguard's checkin guard sends. The tarball is Debian's .orig (upstream's release),
# checked against the sha256 from trixie's main/source/Sources (1.24.1-1+deb13u2).
# Build dependencies (Debian): libevent-dev libc-ares-dev libssl-dev pkg-config gcc make.
# JOBS=N sets make's parallelism (default: every CPU).
set -euo pipefail

VERSION=1.24.1
SHA256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
URL="http://deb.debian.org/debian/pool/main/p/pgbouncer/pgbouncer_${VERSION}.orig.tar.gz"
BUILD_DEPS="libevent-dev libc-ares-dev libssl-dev pkg-config gcc make"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$ROOT/.cache"
PREFIX="$CACHE/pgbouncer-$VERSION"
BIN="$PREFIX/bin/pgbouncer"

say() { echo "build-pgbouncer: $*" >&2; }
die() { say "error: $*"; exit 1; }

built_version() { "$BIN" --version 2>/dev/null | head -n1; }

if [ -x "$BIN" ] && [ "$(built_version)" = "PgBouncer $VERSION" ]; then
    echo "$BIN"
    exit 0
fi

# The Debian packages of BUILD_DEPS that are not installed (what configure or make lacks).
missing_deps() {
    local pkg missing=""
    for pkg in $BUILD_DEPS; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing="$missing $pkg"
    done
    echo "${missing# }"
}

log="$CACHE/build-pgbouncer.log"
step() {  # $1: what, then the command; on failure, the log's tail and what to install
    local what="$1" missing
    shift
    if "$@" >>"$log" 2>&1; then
        return 0
    fi
    tail -n 25 "$log" >&2 || true
    say "error: $what failed (full log: $log)"
    missing="$(missing_deps)"
    if [ -n "$missing" ]; then
        say "missing build dependencies: $missing"
        say "install them: apt-get install -y $missing"
    else
        say "the build needs $BUILD_DEPS: all are installed, see the log"
    fi
    exit 1
}

mkdir -p "$CACHE"
tarball="$CACHE/pgbouncer_${VERSION}.orig.tar.gz"
if [ ! -f "$tarball" ] || ! echo "$SHA256  $tarball" | sha256sum --check --status; then
    command -v curl >/dev/null 2>&1 || die "curl is needed to download $URL (apt-get install -y curl)"
    [ ! -f "$tarball" ] || say "the cached $tarball does not match sha256 $SHA256: downloading it again"
    say "downloading $URL"
    rm -f "$tarball.part"
    curl --fail --silent --show-error --location --retry 3 --max-time 300 \
        -o "$tarball.part" "$URL" || die "could not download $URL"
    got="$(sha256sum "$tarball.part" | cut -d' ' -f1)"
    if [ "$got" != "$SHA256" ]; then
        rm -f "$tarball.part"
        die "sha256 mismatch for $URL: expected $SHA256, got $got (nothing was built)"
    fi
    mv "$tarball.part" "$tarball"
fi

work="$(mktemp -d "$CACHE/build-pgbouncer.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work"
src="$work/pgbouncer-$VERSION"
[ -x "$src/configure" ] || die "$tarball has no pgbouncer-$VERSION/configure"

say "building PgBouncer $VERSION into $PREFIX (log: $log)"
: >"$log"
cd "$src"
step configure ./configure --prefix="$PREFIX" --without-pam --without-systemd
step make make -j"${JOBS:-$(nproc)}"
step "make install" make install DESTDIR="$work/stage"
cd "$ROOT"

# Replace any stale or partial build only once the new one is complete.
rm -rf "$PREFIX"
mv "$work/stage$PREFIX" "$PREFIX"
[ "$(built_version)" = "PgBouncer $VERSION" ] \
    || die "$BIN --version says '$(built_version)', expected 'PgBouncer $VERSION'"
rm -f "$log"
say "built $(built_version)"
echo "$BIN"
