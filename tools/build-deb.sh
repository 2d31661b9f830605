#!/usr/bin/env bash
# Build libpam-twofa_*.deb with `dpkg-buildpackage -us -uc -b` into OUT_DIR (default
# debian-build/, ignored by git).  `make deb` runs this.
#
# dpkg-buildpackage writes its artifacts to the parent of the source tree and leaves
# .pybuild/, debian/libpam-twofa/ and friends inside it, so it runs on a copy of the
# files git would see (tracked, plus untracked ones that are not ignored) in a temporary
# directory; only the artifacts and the build log are moved to OUT_DIR.
#
# PATH is the system's: pybuild runs `python3.11` from PATH, and a pyenv shim there would
# build with the wrong interpreter (without Debian's python3-build and friends).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/debian-build}"
version="$(dpkg-parsechangelog -l "$repo/debian/changelog" -S Version)"
work="$(mktemp -d "${TMPDIR:-/tmp}/pam-twofa-deb.XXXXXX")"
trap 'rm -rf "$work"' EXIT
src="$work/pam-twofa-$version"
mkdir -p "$src" "$out"

if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (
        cd "$repo"
        git ls-files -z --cached --others --exclude-standard \
            | while IFS= read -r -d '' f; do
                if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
            done \
            | tar --null -T - -cf -
    ) | tar -C "$src" -xf -
else  # an unpacked tarball: no git, so leave out what .gitignore names by hand
    tar -C "$repo" --exclude-vcs --exclude=./debian-build --exclude=__pycache__ \
        --exclude='*.egg-info' --exclude=.mypy_cache --exclude=.ruff_cache \
        --exclude=.pytest_cache --exclude=.pybuild -cf - . | tar -C "$src" -xf -
fi

start=$SECONDS
log="$out/build.log"
if ! (
    cd "$src"
    exec env -u PYTHONPATH -u PYTHONHOME -u PYTHONDONTWRITEBYTECODE -u PYENV_VERSION \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
        dpkg-buildpackage -us -uc -b
) >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "build-deb: dpkg-buildpackage failed; full log: $log" >&2
    exit 1
fi

rm -f "$out"/libpam-twofa_*.deb "$out"/pam-twofa_*.buildinfo "$out"/pam-twofa_*.changes
mv "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes "$out"/
echo "build-deb: $(cd "$out" && ls ./*.deb) in $out ($((SECONDS - start)) s; log: $log)"
