#!/bin/sh
# Install Debian's Chromium for the headless-browser report tests (tests/test_report_browser.py).
# Idempotent: does nothing when a Chromium is already there ($NEUROALIGN_CHROMIUM or chromium on
# PATH). Never fails the caller: without root/sudo or a package mirror it warns and exits 0
# (the browser tests then skip, or fail under NEUROALIGN_REQUIRE_BROWSER=1).
set -u

if [ -n "${NEUROALIGN_CHROMIUM:-}" ] && command -v "$NEUROALIGN_CHROMIUM" >/dev/null 2>&1; then
    echo "install-chromium: using NEUROALIGN_CHROMIUM=$NEUROALIGN_CHROMIUM (nothing to do)"
    exit 0
fi
if command -v chromium >/dev/null 2>&1; then
    echo "install-chromium: $(command -v chromium) already installed (nothing to do)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: WARNING: no chromium and no apt-get; install Chromium by hand" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "install-chromium: WARNING: not root and no passwordless sudo; run: sudo apt-get install chromium" >&2
    exit 0
fi
echo "install-chromium: installing chromium with apt-get"
if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; then
    echo "install-chromium: installed $(command -v chromium)"
else
    echo "install-chromium: WARNING: apt-get could not install chromium; the browser tests will skip" >&2
fi
exit 0
