#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the browser tests (Playwright drives /usr/bin/chromium;
# Playwright's own browser download cannot work here). Idempotent: does nothing when it is present.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  exit 0
fi
echo "Chromium is not installed; installing it from Debian's packages" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
if [ ! -x "$CHROMIUM" ]; then
  echo "error: the chromium package did not provide $CHROMIUM" >&2
  exit 1
fi
"$CHROMIUM" --version >&2
