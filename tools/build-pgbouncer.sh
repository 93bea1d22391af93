#!/usr/bin/env bash
# Build PgBouncer 1.24.1 (Debian trixie's source package) into .cache/pgbouncer-1.24.1/ of this repo.
#
#   tools/build-pgbouncer.sh        # prints the binary's path on stdout; a no-op once built
#
# Debian bookworm ships PgBouncer 1.18, which cannot keep prepared statements in transaction
# mode; 1.21+ can (max_prepared_statements), and 1.22+ also tracks DISCARD ALL, which
# tenantguard's checkin guard sends. The source comes through apt, by package name:
# `apt-get source --download-only pgbouncer` with a temporary APT configuration that reads
# only a deb-src list derived from this machine's own Debian entries (/etc/apt/sources.list
# and /etc/apt/sources.list.d/), with the release switched to trixie; its index lists and
# downloads live in a temporary directory under .cache/. The machine's apt configuration and
# lists are not changed. apt checks the files against trixie's signed Sources index; the
# upstream tarball (Debian's .orig, upstream's release) is also pinned by its sha256 below.
# Debian's own patches are not applied: the build is upstream's 1.24.1.
# Build dependencies (Debian): libevent-dev libc-ares-dev libssl-dev pkg-config gcc make.
# JOBS=N sets make's parallelism (default: every CPU).
set -euo pipefail

VERSION=1.24.1
SHA256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
RELEASE=trixie  # the Debian release whose source package is 1.24.1
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

# A deb-src list for $RELEASE from this machine's Debian entries (the suites of its own
# release, e.g. bookworm, bookworm-updates, bookworm-security, become trixie, trixie-updates,
# trixie-security); same archives, components and keys. Printed in deb822 form.
derive_sources() {
    local codename
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [ -n "$codename" ] || die "/etc/os-release names no VERSION_CODENAME: not Debian?"
    python3 - "$codename" "$RELEASE" /etc/apt/sources.list /etc/apt/sources.list.d/* <<'PY'
import re
import sys
from pathlib import Path

codename, release, *files = sys.argv[1:]


def suite(s: str) -> str | None:
    if s == codename or s.startswith(codename + "-"):
        return release + s[len(codename):]
    return None


entries = []  # (uris, suites, components, signed_by)
for name in files:
    path = Path(name)
    if not path.is_file():
        continue
    text = path.read_text()
    if name.endswith(".sources"):
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            key = None
            for line in stanza.splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                if line[0] in " \t" and key:  # a continuation line
                    fields[key] += "\n" + line.strip()
                    continue
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            suites = [t for s in fields.get("suites", "").split() if (t := suite(s))]
            if suites:
                entries.append(
                    (fields["uris"].split(), suites, fields.get("components", "").split(),
                     fields.get("signed-by", ""))
                )
    elif name.endswith(".list") or path.name == "sources.list":
        for line in text.splitlines():
            m = re.match(r"\s*deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)", line)
            if not m or not (t := suite(m.group(3))):
                continue
            opts = dict(o.split("=", 1) for o in (m.group(1) or "").split() if "=" in o)
            entries.append(([m.group(2)], [t], m.group(4).split(), opts.get("signed-by", "")))

for uris, suites, components, signed_by in entries:
    print("Types: deb-src")
    print("URIs: " + " ".join(uris))
    print("Suites: " + " ".join(suites))
    print("Components: " + " ".join(components))
    if signed_by:
        print("Signed-By: " + signed_by.replace("\n", "\n "))
    print()
PY
}

# Debian's .orig tarball of $VERSION, by package name through apt, into $1.
fetch_source() {
    local dest="$1" apt_dir version upstream orig
    command -v apt-get >/dev/null 2>&1 || die "apt-get is needed to fetch pgbouncer's source"
    apt_dir="$(mktemp -d "$CACHE/apt.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the EXIT trap of the build replaces this one
    trap "rm -rf '$apt_dir'" EXIT
    mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache" "$apt_dir/src"
    derive_sources >"$apt_dir/sources.list.d/$RELEASE-src.sources"
    grep -q '^URIs: ' "$apt_dir/sources.list.d/$RELEASE-src.sources" \
        || die "no Debian entry in /etc/apt/sources.list{,.d/} to derive a $RELEASE deb-src list from"
    local apt=(
        apt-get -q
        -o "Dir::Etc::sourcelist=$apt_dir/sources.list"  # absent: only the parts below
        -o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
        -o "Dir::State::lists=$apt_dir/lists"
        -o "Dir::Cache=$apt_dir/cache"
        -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
        -o "APT::Sandbox::User=root"  # the temporary directories are root's alone
    )
    say "apt-get update (a temporary $RELEASE deb-src list derived from /etc/apt)"
    "${apt[@]}" update >"$apt_dir/update.log" 2>&1 \
        || { cat "$apt_dir/update.log" >&2; die "apt-get update of the $RELEASE deb-src list failed"; }
    say "apt-get source --download-only pgbouncer ($RELEASE)"
    (cd "$apt_dir/src" && "${apt[@]}" source --download-only pgbouncer) >"$apt_dir/source.log" 2>&1 \
        || { cat "$apt_dir/source.log" >&2; die "apt-get source pgbouncer failed"; }
    version="$(sed -n 's/^Version: //p' "$apt_dir"/src/pgbouncer_*.dsc | head -n1)"
    upstream="${version#*:}"
    upstream="${upstream%-*}"
    [ "$upstream" = "$VERSION" ] \
        || die "$RELEASE's pgbouncer source is ${version:-missing}, expected $VERSION-* (nothing was built)"
    orig="$apt_dir/src/pgbouncer_${VERSION}.orig.tar.gz"
    [ -f "$orig" ] || die "apt-get source pgbouncer $version brought no $(basename "$orig")"
    got="$(sha256sum "$orig" | cut -d' ' -f1)"
    [ "$got" = "$SHA256" ] \
        || die "sha256 mismatch for pgbouncer $version's .orig: expected $SHA256, got $got (nothing was built)"
    say "pgbouncer $version from $RELEASE: sha256 ok"
    mv "$orig" "$dest"
    rm -rf "$apt_dir"
    trap - EXIT
}

mkdir -p "$CACHE"
tarball="$CACHE/pgbouncer_${VERSION}.orig.tar.gz"
if [ ! -f "$tarball" ] || ! echo "$SHA256  $tarball" | sha256sum --check --status; then
    [ ! -f "$tarball" ] || say "the cached $tarball does not match sha256 $SHA256: fetching it again"
    rm -f "$tarball"
    fetch_source "$tarball"
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
