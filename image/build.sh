#!/usr/bin/env bash
# Builds the shipgate container image from scratch:
#
#   image/build.sh                 # builds the reference in image/REFERENCE
#   image/build.sh --tag NAME:TAG  # another name
#   image/build.sh --with-shell    # adds busybox's sh and tools, tagged TAG-shell,
#                                  # for CI systems that run scripts in the image
#
# 1. cargo builds the binary (the release profile, target/image);
# 2. a root filesystem is staged: the binary and the C runtime it links
#    (glibc's loader, libc, libm, libgcc_s, copied from this machine, so
#    they are the ones it was built against), CA certificates, a passwd
#    entry for the non-root user, /tmp;
# 3. buildah (or docker, or podman, whichever is found first) builds
#    image/Containerfile on it, labelled with the version and git revision.
#
# buildah honours STORAGE_DRIVER and BUILDAH_ISOLATION (the tests use vfs
# and chroot: no daemon, no overlay mounts).
set -euo pipefail
cd "$(dirname "$0")/.."

tag=$(cat image/REFERENCE)
with_shell=0
while (($#)); do
    case "$1" in
        --tag) tag="${2:?--tag needs NAME:TAG}"; shift 2 ;;
        --with-shell) with_shell=1; shift ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "image/build.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
done

certs=/etc/ssl/certs/ca-certificates.crt
if [ ! -r "$certs" ]; then
    echo "image/build.sh: $certs is missing: install Debian's ca-certificates" >&2
    exit 1
fi
builder=""
for candidate in buildah docker podman; do
    if command -v "$candidate" >/dev/null; then builder=$candidate; break; fi
done
if [ -z "$builder" ]; then
    echo "image/build.sh: no image builder: install buildah (apt-get install buildah), docker or podman" >&2
    exit 1
fi

# Its own target directory: the image's binary never waits for, or
# invalidates, a development build's.
cargo build --release --locked -p shipgate --target-dir target/image
binary=target/image/release/shipgate

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
rootfs="$context/rootfs"
install -D -m 0755 "$binary" "$rootfs/usr/local/bin/shipgate"
# The shared libraries and the loader, at the paths the binary asks for.
linked=$(ldd "$binary")
libraries=$(grep -o '/[^ ]*' <<<"$linked")
if ! grep -q 'libc.so' <<<"$libraries"; then
    echo "image/build.sh: ldd found no C library for $binary:" >&2
    echo "$linked" >&2
    exit 1
fi
for library in $libraries; do
    install -D -m 0755 "$(readlink -f "$library")" "$rootfs$library"
done
install -D -m 0644 "$certs" "$rootfs/etc/ssl/certs/ca-certificates.crt"
install -d -m 0755 "$rootfs/etc" "$rootfs/home/shipgate"
install -d -m 1777 "$rootfs/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nshipgate:x:65532:65532:shipgate:/home/shipgate:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nshipgate:x:65532:\n' >"$rootfs/etc/group"
if ((with_shell)); then
    # GitLab runs a job's script with the image's shell: a static busybox
    # (Debian's busybox-static) and its applets.
    busybox=$(command -v busybox || true)
    if [ -z "$busybox" ] || ! { ldd "$busybox" 2>&1 || true; } | grep -Eq 'not a dynamic executable|statically linked'; then
        echo "image/build.sh: --with-shell needs a static busybox: apt-get install busybox-static" >&2
        exit 1
    fi
    install -D -m 0755 "$busybox" "$rootfs/bin/busybox"
    for applet in $("$busybox" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
    done
    tag="$tag-shell"
fi
cp image/Containerfile "$context/Containerfile"

version=$("$binary" -V | cut -d' ' -f2)
# The commit, marked -dirty when the tree has changes it does not hold.
revision=$(git describe --always --abbrev=40 --dirty 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
build_args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "CREATED=$created")
case "$builder" in
    buildah) buildah build --pull=never "${build_args[@]}" -t "$tag" -f "$context/Containerfile" "$context" ;;
    *) "$builder" build "${build_args[@]}" -t "$tag" -f "$context/Containerfile" "$context" ;;
esac
echo "built $tag ($version, $revision) with $builder"
