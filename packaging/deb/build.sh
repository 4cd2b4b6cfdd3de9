#!/bin/sh
# Builds Picket's two Debian packages from a built `picket` binary:
#   sh packaging/deb/build.sh BINARY OUTDIR     (`make deb` runs it on the release build)
# - picket-agent_VERSION_ARCH.deb: /usr/bin/picket (manager and agent are one binary), the
#   agent's unit and its data dir /var/lib/picket-agent (root, 0700);
# - picket_VERSION_ARCH.deb: the manager's unit, its user `picket` and data dir /var/lib/picket
#   (picket, 0700); it depends on picket-agent of the same version for the binary.
# dpkg-deb (Debian's own, on every Debian system) builds them from a staged tree, so packaging
# needs nothing from outside Debian. DEB_COMPRESS=gzip DEB_COMPRESS_LEVEL=1 trade size for speed
# (the tests use them: xz takes half a minute on a debug build).
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 BINARY OUTDIR" >&2
    exit 2
fi
bin=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
compress=${DEB_COMPRESS:-xz}
level=${DEB_COMPRESS_LEVEL:+-z$DEB_COMPRESS_LEVEL}

version=$("$bin" --version | sed -n 's/^picket \([^ ]*\)$/\1/p')
if [ -z "$version" ]; then
    echo "$bin --version did not print 'picket VERSION'" >&2
    exit 1
fi
arch=$(dpkg --print-architecture)

# Depends from what the binary links: glibc at the newest symbol version it uses, and the
# unwinder. Anything else would be a new dependency to name here, so it stops the build.
glibc=$(objdump -T "$bin" | sed -n 's/.*GLIBC_\([0-9][0-9.]*\).*/\1/p' | sort -V | tail -n 1)
libs=""
for needed in $(objdump -p "$bin" | awk '$1 == "NEEDED" { print $2 }'); do
    case "$needed" in
    libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux*) ;;
    libgcc_s.so.1) libs="$libs, libgcc-s1" ;;
    *)
        echo "$bin needs $needed: name its package in $0" >&2
        exit 1
        ;;
    esac
done
binary_depends="libc6 (>= ${glibc:-2.17})$libs"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# stage PACKAGE UNIT DATA_DIR OWNER: the tree every package has (unit, data dir, maintainer
# scripts, copyright); the caller adds its own files, then `finish` writes control and builds.
stage() {
    root="$work/$1"
    install -d -m 0755 "$root/DEBIAN" "$root/lib/systemd/system" "$root/usr/share/doc/$1"
    install -m 0644 "$repo/assets/systemd/$2" "$root/lib/systemd/system/$2"
    install -d -m 0700 "$root$3"
    install -m 0644 "$here/copyright" "$root/usr/share/doc/$1/copyright"
    for script in postinst prerm postrm; do
        sed -e "s|@PACKAGE@|$1|g" -e "s|@UNIT@|$2|g" -e "s|@DATA_DIR@|$3|g" \
            -e "s|@OWNER@|$4|g" "$here/$script.in" >"$root/DEBIAN/$script"
        chmod 0755 "$root/DEBIAN/$script"
    done
}

# finish PACKAGE DEPENDS DESCRIPTION (its first line the summary)
finish() {
    root="$work/$1"
    size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
    {
        echo "Package: $1"
        echo "Version: $version"
        echo "Architecture: $arch"
        echo "Maintainer: Picket developers <picket@invalid>"
        echo "Installed-Size: $size"
        echo "Depends: $2"
        echo "Section: net"
        echo "Priority: optional"
        echo "Description: $3"
    } >"$root/DEBIAN/control"
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' |
        xargs -0 md5sum >DEBIAN/md5sums)
    chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
    # shellcheck disable=SC2086 # $level is empty or one word
    dpkg-deb --root-owner-group -Z"$compress" $level --build "$root" \
        "$out/${1}_${version}_${arch}.deb" >/dev/null
    echo "$out/${1}_${version}_${arch}.deb"
}

stage picket-agent picket-agent.service /var/lib/picket-agent root
install -d -m 0755 "$work/picket-agent/usr/bin"
# Line tables go (half the file); the symbol table stays, so a panic's backtrace names functions.
strip --strip-debug -o "$work/picket-agent/usr/bin/picket" "$bin"
chmod 0755 "$work/picket-agent/usr/bin/picket"
install -m 0644 "$repo/README.md" "$work/picket-agent/usr/share/doc/picket-agent/README.md"
finish picket-agent "$binary_depends" "Picket agent, and the picket binary
 Picket is an all-in-one security manager for small sites. This package has
 the picket binary (manager, agent and admin CLI in one) and the agent's
 systemd unit, which runs once the agent is activated with a token from the
 manager (see /usr/share/doc/picket-agent/README.md)."

stage picket picket-manager.service /var/lib/picket picket
finish picket "picket-agent (= $version), adduser" "Picket manager: console, REST API and agent port
 Picket is an all-in-one security manager for small sites. This package runs
 the manager as a systemd service under its own user, with its data dir in
 /var/lib/picket: policies, computers, events and alerts, the web console and
 REST API on port 4119, and the agents' port 4120."
