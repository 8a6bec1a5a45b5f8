#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k store).
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the tests use: real speech (LibriVox clips), a speech synthesiser, and a
# headless browser with its WebDriver (the report page is rendered in it)
need=()
for pkg in pocketsphinx-testdata espeak-ng chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi
bash scripts/setup.sh dev
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$status"
