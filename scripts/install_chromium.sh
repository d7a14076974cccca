#!/usr/bin/env bash
# The report test renders report.html in Debian's headless Chromium (no
# browser download: Playwright drives /usr/bin/chromium). Install it when
# missing and we are allowed to; otherwise say so and let the test skip.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
    echo "note: /usr/bin/chromium is missing and cannot be installed here (not root or no apt-get); the browser test will skip" >&2
fi
