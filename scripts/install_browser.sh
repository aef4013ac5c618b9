#!/usr/bin/env bash
# Install what tests/test_browser.py needs on a fresh Debian machine: Debian's own headless
# Chromium and its matching chromedriver (/usr/bin/chromium, /usr/bin/chromedriver), and the
# Selenium Python driver into the venv. No browser is downloaded from anywhere else: the test
# points Selenium at these two binaries, so Selenium Manager never runs.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
SELENIUM_SPEC=${TOPLIB_SELENIUM_SPEC:-selenium==4.51.0}

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "chromium and chromedriver already installed"
else
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core
fi

"$VENV/bin/python" -m pip --disable-pip-version-check -q install "$SELENIUM_SPEC"

/usr/bin/chromium --version
/usr/bin/chromedriver --version
"$VENV/bin/python" -c "import selenium; print('selenium', selenium.__version__)"
