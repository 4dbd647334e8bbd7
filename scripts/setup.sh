#!/usr/bin/env bash
# Installs what poolshim needs to build and test on Debian 12: compilers, CMake, GoogleTest,
# Google Benchmark, spdlog/fmt, libunwind, elfutils, valgrind, Chromium (headless, for the HTML
# report's browser test), and the shipping checks' tools (help2man, promtool, systemd-analyze,
# dpkg-dev; npm packages for the Kubernetes schema, in POOLSHIM_NPM_DIR). Idempotent and
# non-interactive: it installs only what is missing. The CUDA Toolkit 13 is not a Debian package;
# it is checked.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/setup.sh [--check]

Installs the Debian packages poolshim needs (apt-get, as root) and checks that the CUDA
Toolkit 13 is installed (CUDAToolkit_ROOT, else /usr/local/cuda).
  --check   only report what is missing; install nothing (exit 1 if anything is)
USAGE
}

check_only=0
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --check) check_only=1 ;;
  "") ;;
  *) echo "setup.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
esac

packages=(
  build-essential cmake ninja-build pkg-config python3
  python3-numpy  # the poolshim Python package's tests (zero-copy views, numpy.from_dlpack)
  python3-zmq  # the channel benchmark's baseline (ZeroMQ ipc://, tests/bench/channel_bench.py)
  python3-matplotlib  # the footprint benchmark's plot (tests/bench/footprint.py)
  libgtest-dev libgmock-dev libbenchmark-dev
  libspdlog-dev libfmt-dev libunwind-dev liblzma-dev libdw-dev libelf-dev
  libhiredis-dev  # poolshimd's Redis control plane (poolshimd --redis)
  redis-server  # its tests start a redis-server of their own (daemon.redis_plane)
  valgrind binutils util-linux
  clang  # libFuzzer for the protocol fuzz target
  lld  # links the test programs (tests/CMakeLists.txt): a third of GNU ld's time
  clang-format  # scripts/check_format.sh (ctest structure.format)
  chromium  # headless: poolshim-stats' HTML report rendered offline (stats.html_report_in_chromium)
  help2man  # the man pages, from each program's --help (scripts/cmake/poolshim_install.cmake)
  dpkg-dev  # cpack -G DEB's dpkg-shlibdeps (Depends), and the package test (ctest deploy.*)
  systemd man-db  # systemd-analyze verify/security of the unit (it checks man: links too)
  prometheus  # promtool: the metrics page's lint, the dashboard's queries (ctest deploy.*)
  nodejs  # the Kubernetes manifests' schema check (scripts/deploy/validate)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if ((check_only)); then
    echo "setup.sh: missing packages: ${missing[*]}"
  else
    echo "setup.sh: installing ${missing[*]}"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# The Kubernetes schema checkers (scripts/deploy/validate/package.json, locked): installed once into
# POOLSHIM_NPM_DIR, again only when the lock file changes; the tests never reach the network.
npm_dir=${POOLSHIM_NPM_DIR:-/opt/poolshim-dev/npm}
validate_src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/deploy/validate
if ! cmp -s "$validate_src/package-lock.json" "$npm_dir/package-lock.json" 2>/dev/null ||
  [[ ! -d "$npm_dir/node_modules/kubernetes-models" ]]; then
  if ((check_only)); then
    echo "setup.sh: the npm checkers are not installed in $npm_dir"
    missing+=(npm-checkers)
  else
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    command -v npm >/dev/null 2>&1 || $sudo apt-get install -y -qq --no-install-recommends npm >/dev/null || true
    echo "setup.sh: installing the npm checkers into $npm_dir"
    $sudo mkdir -p "$npm_dir"
    $sudo cp "$validate_src/package.json" "$validate_src/package-lock.json" "$npm_dir/"
    (cd "$npm_dir" && $sudo npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
      echo "setup.sh: npm ci in $npm_dir failed: ctest deploy.kubernetes_manifests will fail" >&2
  fi
fi

cuda_root="${CUDAToolkit_ROOT:-/usr/local/cuda}"
if [[ ! -x "$cuda_root/bin/nvcc" || ! -f "$cuda_root/include/cuda.h" ]]; then
  cat >&2 <<MSG
setup.sh: the CUDA Toolkit was not found at $cuda_root (need bin/nvcc and include/cuda.h).
  poolshim builds against the real CUDA 13 headers and libcudart, even on machines without a GPU.
  Install the CUDA Toolkit 13.x from NVIDIA (it is not in Debian's archive), then re-run, or set
  CUDAToolkit_ROOT to where it is installed.
MSG
  exit 1
fi
version=$("$cuda_root/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
if [[ "$version" != "13" ]]; then
  echo "setup.sh: CUDA Toolkit at $cuda_root is release ${version:-unknown}; poolshim needs 13.x" >&2
  exit 1
fi
if ((check_only)) && ((${#missing[@]})); then exit 1; fi
echo "setup.sh: dependencies present (CUDA $version at $cuda_root)"
