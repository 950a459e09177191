#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks, then the npm packages.
# Debian's chromium carries SwiftShader, the software Vulkan driver WebGPU falls back to without a GPU;
# libvulkan1 is the Vulkan loader Dawn (WebGPU for Node) opens.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || need+=(libvulkan1)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# puppeteer drives the system Chromium; it must not try to download its own.
export PUPPETEER_SKIP_DOWNLOAD=1
npm ci --no-audit --no-fund --loglevel=error
