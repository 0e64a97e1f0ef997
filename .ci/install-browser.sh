#!/usr/bin/env bash
# The browser the page test drives: Debian's chromium and chromedriver, installed with apt when
# missing (CI runs as root on a fresh machine). Quick and silent when both are present.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
  echo "install-browser: /usr/bin/chromium or /usr/bin/chromedriver missing and not root; install chromium chromium-driver" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
echo "install-browser: installing chromium and chromium-driver (apt)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]
