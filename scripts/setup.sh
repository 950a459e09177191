#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks, then the npm packages.
# Debian's chromium carries SwiftShader, the software Vulkan driver WebGPU falls back to without a GPU;
# libvulkan1 is the Vulkan loader Dawn (WebGPU for Node) opens.
set -euo pipefail
cd "$(dirname "$0")/.."
node_ok() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
    node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'
}
need=()
# Debian 13 packages Node 20.19; a machine without Node gets it from apt, an older one is named below.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || need+=(libvulkan1)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! node_ok; then
  echo "loramerge needs Node.js 20.19 or newer with npm; this machine has $(node --version 2>/dev/null || echo none): install a newer Node.js, then run this again." >&2
  exit 1
fi
# puppeteer drives the system Chromium; it must not try to download its own.
export PUPPETEER_SKIP_DOWNLOAD=1
npm ci --no-audit --no-fund --loglevel=error
