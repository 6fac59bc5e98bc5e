#!/usr/bin/env bash
# Installs every Debian package tandem needs to build, test and benchmark.
# Idempotent and non-interactive: installs only what is missing, so a second run
# on a ready machine does nothing and needs no network.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --bench  also the peers the benchmarks compare against
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build pkg-config make python3
  # libraries (DESIGN.md §4)
  libboost-dev libssl-dev libsqlite3-dev libpq-dev libtomlplusplus-dev libcli11-dev
  libspdlog-dev libfmt-dev nlohmann-json3-dev libzstd-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # fuzzing the SIP parser (libFuzzer ships with clang)
  clang
  # peers the tests drive: SIP clients and PostgreSQL
  sip-tester sipsak baresip postgresql procps
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(kamailio kamailio-presence-modules kamailio-sqlite-modules)
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "install-deps: missing packages (${missing[*]}) and not root; run this script as root" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
