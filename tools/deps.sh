#!/usr/bin/env bash
# Installs the Debian 12 packages tilejit needs to build and test, if missing.
# Idempotent: does nothing when everything is present.
set -euo pipefail
# clang-19 and libclang-rt-19-dev: libFuzzer and the sanitizers of the fuzz build.
pkgs=(build-essential cmake ninja-build pkg-config llvm-19-dev check libdlpack-dev zlib1g-dev libzstd-dev
      clang-19 libclang-rt-19-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "tilejit: installing ${missing[*]}" >&2
sudo_=""
if [ "$(id -u)" -ne 0 ]; then sudo_="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo_ apt-get update -qq
$sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}"
