#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the playground's browser test
# (tests/e2e/test_playground_browser.py drives it with Playwright; Playwright's own browser
# download is never used). Instant when /usr/bin/chromium is already there.
set -euo pipefail

if command -v "${TANDEM_CHROMIUM:-chromium}" >/dev/null; then
    exit 0
fi

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

echo "ensure-chromium: installing Debian's chromium" >&2
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
