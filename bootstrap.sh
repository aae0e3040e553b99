#!/usr/bin/env bash
# Set up Commonwatt on a fresh Debian machine (Python 3.11+) and run it.
#
#   bash bootstrap.sh demo    venv + install, then run the simulated coop (Ctrl-C stops it)
#   bash bootstrap.sh test    venv + install + system test binaries (mosquitto, victoria-metrics,
#                             chromium, chromium-driver), then ruff and the full suite
#   bash bootstrap.sh bench   venv + install, then every benchmark (JSON on stdout)
#   bash bootstrap.sh agent AGENT.toml   a household's edge agent only (no scipy, pandas...)
#   bash bootstrap.sh lock    rewrite constraints.txt from a fresh install of pyproject's ranges
#
# Installs take the exact versions in constraints.txt (pip install -c).
#
# Everything goes into .venv beside this file; system packages come from apt only
# where the binary is missing.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
APT_UPDATED=0

apt_install() {  # apt_install PACKAGE...: install what is missing, updating the index once
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: need $* but apt-get is not available; install them by hand" >&2
        return 1
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        apt_retry update -qq
        APT_UPDATED=1
    fi
    apt_retry install -y -qq "$@" >/dev/null
}

apt_retry() {  # apt_retry ARGS...: apt-get, waiting while another apt or dpkg holds the lock
    local tries=0
    until DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=120 "$@"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 10 ]; then
            echo "bootstrap: apt-get $* failed $tries times" >&2
            return 1
        fi
        echo "bootstrap: apt-get busy or failing; retrying in 15 s ($tries/10)" >&2
        sleep 15
    done
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

make_venv() {
    if [ ! -x .venv/bin/python ]; then
        if ! "$PYTHON" -m venv .venv 2>/dev/null; then
            rm -rf .venv
            apt_install python3-venv
            "$PYTHON" -m venv .venv
        fi
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    # The exact versions the suite passed with (constraints.txt, kept in the repo): two
    # installs a month apart get the same packages.
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
        -e ".[coop,dev]"
}

lock() {  # a fresh venv from pyproject.toml's ranges, its versions written to constraints.txt
    rm -rf .venv-lock
    "$PYTHON" -m venv .venv-lock
    .venv-lock/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv-lock/bin/python -m pip install -q --disable-pip-version-check ".[coop,dev]"
    {
        echo "# Exact versions every install uses: bash bootstrap.sh installs with 'pip install -c constraints.txt'."
        echo "# The versions the full test suite last passed with (Python 3.11, Linux x86_64 and aarch64 wheels)."
        echo "# Refresh after changing pyproject.toml: bash bootstrap.sh lock (then run the suite and commit)."
        .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v "^commonwatt"
    } > constraints.txt
    rm -rf .venv-lock
}

command=${1:-}
case "$command" in
    demo)
        make_venv
        shift
        exec .venv/bin/commonwatt demo "$@"
        ;;
    test)
        missing=""
        have mosquitto || missing="$missing mosquitto"
        have victoria-metrics || missing="$missing victoria-metrics"
        have chromium || missing="$missing chromium"
        have chromedriver || missing="$missing chromium-driver"
        [ -z "$missing" ] || apt_install $missing
        make_venv
        .venv/bin/ruff check .
        # the 20 slowest tests close the log: where the suite's minutes go
        exec .venv/bin/python -m pytest -p no:cacheprovider --durations=20
        ;;
    lock)
        lock
        echo "bootstrap: constraints.txt rewritten; run 'bash bootstrap.sh test' before committing it"
        ;;
    agent)
        # A household's edge agent (a Raspberry Pi): no numerics or web stack.
        if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
        .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
            ".[agent]"
        shift
        exec .venv/bin/commonwatt agent "$@"
        ;;
    bench)
        make_venv
        shift
        exec .venv/bin/python -m bench "$@"
        ;;
    *)
        echo "usage: bash bootstrap.sh demo|test|bench|agent AGENT.toml|lock" >&2
        exit 2
        ;;
esac
