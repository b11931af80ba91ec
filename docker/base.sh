#!/usr/bin/env bash
# Builds the base image every spindle image starts FROM, without any registry: a Debian bookworm
# minbase root file system made by debootstrap from Debian's package mirror, loaded with
# `docker import`. Idempotent: an existing image with the same tag is kept (--force rebuilds),
# and the debootstrap tarball is cached so a rebuild does not download again.
#
#   docker/base.sh [--force]        prints the image tag (spindle-base:bookworm) on stdout
#
# Needs: root (debootstrap chroots; installed with apt-get when missing), docker.
# Env: SPINDLE_DEBIAN_MIRROR (default http://deb.debian.org/debian),
#      SPINDLE_DOCKER_CACHE (default ~/.cache/spindle/docker).
set -euo pipefail
tag=spindle-base:bookworm
mirror=${SPINDLE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${SPINDLE_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spindle/docker}
force=0
[ "${1:-}" = --force ] && force=1

if [ "$force" = 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "base.sh: debootstrap needs root (run with sudo)" >&2; exit 1; }
if ! command -v debootstrap >/dev/null; then
  echo "base.sh: installing debootstrap (apt-get)" >&2
  { apt-get install -y debootstrap || { apt-get update && apt-get install -y debootstrap; }; } >&2 \
    || { echo "base.sh: debootstrap is missing and apt-get could not install it" >&2; exit 1; }
fi

mkdir -p "$cache"
tarball=$cache/bookworm-minbase.tar
if [ "$force" = 1 ] || [ ! -s "$tarball" ]; then
  root=$(mktemp -d /tmp/spindle-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  echo "base.sh: debootstrap bookworm (minbase) from $mirror into $root" >&2
  # ca-certificates and tini-free: the runtime images add what they need with apt-get, which
  # works inside builds because the mirror is reachable (only registries are not).
  debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >&2
  # A smaller image: no apt lists or caches from the bootstrap.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  "$tarball" "$tag" >&2
echo "$tag"
