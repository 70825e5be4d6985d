#!/usr/bin/env bash
# Set up and run Veillée on a fresh Debian 12 machine with Python 3.11.
#
#   bash dev.sh serve [server.py options]   run the service on its defaults, with demo data
#   bash dev.sh test [pytest options]       install what the tests need, then run ruff, mypy and pytest
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PYTHON="$VENV/bin/python"

# Debian packages the test suite needs: a real Redis, Debian's Chromium and its
# French texts for the browser tests, espeak-ng for the spoken-French microphone,
# ffmpeg for test media, PostgreSQL for the database tests.
TEST_PACKAGES=(redis-server chromium chromium-l10n ffmpeg espeak-ng postgresql)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_debian_packages() {
    local missing=()
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "dev.sh: installing Debian packages: ${missing[*]}"
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
}

setup_python() {
    local extras="$1"
    if [ ! -x "$PYTHON" ]; then
        python3 -m venv "$VENV"
    fi
    "$PYTHON" -m pip install -q --disable-pip-version-check -e ".$extras"
}

case "${1:-}" in
    serve)
        shift
        setup_python ""
        exec "$PYTHON" server.py --demo "$@"
        ;;
    test)
        shift
        install_debian_packages "${TEST_PACKAGES[@]}"
        setup_python "[test]"
        echo "dev.sh: ruff"
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        echo "dev.sh: mypy --strict"
        "$VENV/bin/mypy" .
        echo "dev.sh: pytest"
        status=0
        "$PYTHON" -m pytest "$@" || status=$?
        if [ "$status" -eq 5 ]; then
            echo "dev.sh: pytest collected no test" >&2
            exit 1
        fi
        exit "$status"
        ;;
    *)
        sed -n '2,6p' "$0" >&2
        exit 2
        ;;
esac
