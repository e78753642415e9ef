#!/usr/bin/env bash
# Installs everything greedy-infomax needs on a fresh Debian machine into ./.venv.
#   ./setup.sh          system packages (when root) + the package
#   ./setup.sh --test   the same, plus the test dependencies
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(dataset-fashion-mnist festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts fortunes-min)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
else
    echo "setup: not root, skipping Debian packages (${APT_PACKAGES[*]}); install them yourself if needed"
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# Pin the CPU build of torch first, so the project's open range does not pull a multi-gigabyte CUDA build.
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extra}"
echo "setup: ready (.venv/bin/gim)"
