#!/usr/bin/env bash
# Installs the Debian (bookworm) packages troupe builds and tests with. Idempotent: packages already
# present are skipped, and apt is only asked when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git curl ca-certificates
  libcaf-dev libssl-dev
  libucx-dev ucx-utils
  libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev
  libboost-dev
  libcpp-httplib-dev libcurl4-openssl-dev
  libyaml-cpp-dev libtomlplusplus-dev libcli11-dev
  libxxhash-dev
  libopenblas-dev
  libsentencepiece-dev
  clang-14 libclang-rt-14-dev lld-14  # the fuzz harnesses (fuzz/, ctest label fuzz)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

install_node_test_deps() {
  # The API tests drive the server with the official OpenAI client from npm (skipped without it).
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/node"
  if command -v npm >/dev/null 2>&1 && [ ! -d "$dir/node_modules/openai" ]; then
    echo "install-deps: npm packages for the API client tests" >&2
    (cd "$dir" && npm install --no-package-lock --no-audit --no-fund --silent) ||
      echo "install-deps: npm install failed; the OpenAI client tests will be skipped" >&2
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present" >&2
  install_node_test_deps
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_node_test_deps
echo "install-deps: done" >&2
