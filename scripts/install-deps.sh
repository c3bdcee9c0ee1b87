#!/usr/bin/env bash
# Installs the C libraries NanoFind links (libhdf5, libtiff, libpng, zlib, FFTW) and pkg-config
# when they are missing: apt-get on Debian/Ubuntu, Homebrew on macOS. Does nothing when all are
# there. With --test (make test) it also tries Debian's chromium, which one test uses.
set -euo pipefail
for_tests=false; [ "${1:-}" = "--test" ] && for_tests=true
need=()
macos=false; [ "$(uname -s)" = "Darwin" ] && macos=true
# Homebrew where its installer puts it (/opt/homebrew on Apple silicon, /usr/local on Intel),
# whether or not this shell's PATH has it yet; on Apple silicon only the arm64 one will link.
brew=""
if $macos; then
  for b in /opt/homebrew/bin/brew /usr/local/bin/brew; do
    if [ -x "$b" ]; then
      [ "$b" = /usr/local/bin/brew ] && [ "$(uname -m)" = arm64 ] && continue
      brew="$b"; break
    fi
  done
  [ -n "$brew" ] && eval "$("$brew" shellenv)"
fi
# zlib: linked directly (the PNG shim sets its strategy, the TIFF writer deflates masks and labels);
# zlib1g-dev brings it on Debian; on macOS the system's own serves (Homebrew's is keg-only).
libs="hdf5 libtiff-4 libpng zlib fftw3f"; $macos && libs="hdf5 libtiff-4 libpng fftw3f"
for pc in $libs; do
  pkg-config --exists "$pc" 2>/dev/null || need+=("$pc")
done
command -v pkg-config >/dev/null 2>&1 || need+=("pkg-config")
# report.html is checked in a real headless browser (Debian's chromium) by make test.
# Not every distribution packages it (Ubuntu ships a snap): without it that one check is skipped.
if $for_tests && command -v apt-get >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } \
    || echo "note: Debian's chromium could not be installed; the report.html browser check will be skipped"
fi
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing system libraries for: ${need[*]}"
if $macos && [ -n "$brew" ]; then
  "$brew" install pkg-config hdf5 libtiff libpng fftw
elif $macos; then
  if [ "$(uname -m)" = arm64 ] && [ -x /usr/local/bin/brew ]; then
    echo "error: the only Homebrew here is the Intel one (/usr/local), whose libraries an arm64 build cannot link; install Homebrew for Apple silicon (https://brew.sh, into /opt/homebrew) and run make again" >&2
  else
    echo "error: Homebrew is not installed; install it with the command on https://brew.sh (it asks for your password), then run make again" >&2
  fi
  exit 1
elif command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    pkg-config libhdf5-dev libtiff-dev libpng-dev zlib1g-dev libfftw3-dev
else
  echo "error: neither apt-get nor brew found; install libhdf5, libtiff, libpng, fftw and pkg-config by hand" >&2
  exit 1
fi
