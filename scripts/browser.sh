#!/usr/bin/env bash
# Makes sure Debian's chromium and chromedriver are installed: the report's test renders the
# page in a real headless browser. Installs them with apt-get where we may; else says what to
# install. Exit status 0 only when both are there.
set -u
have() { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }
have && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "browser: installing chromium and chromium-driver with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }
fi
have && exit 0
echo "browser: install Debian's chromium and chromium-driver (the report test needs them)" >&2
exit 1
