#!/usr/bin/env bash
# Static analysis of terraform/ (and the Dockerfile) with checkov, from its own tools venv
# (.tools-venv/): checkov's pinned botocore clashes with aioboto3's, so it never goes into .venv.
#   scripts/checkov.sh            bootstrap .tools-venv if needed, then scan
#   scripts/checkov.sh --bootstrap-only
# Extra arguments are passed to the terraform scan. Skips must be justified inline in the .tf files
# (`#checkov:skip=CKV_...:reason`); there is no skip list here.
set -euo pipefail

CHECKOV_VERSION="3.3.30"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LVP_TOOLS_VENV:-$ROOT/.tools-venv}"
PY="${PYTHON:-python3}"
MARKER="$VENV/.checkov-$CHECKOV_VERSION"

bootstrap() {
  if [ -f "$MARKER" ] && [ -x "$VENV/bin/checkov" ]; then
    return 0
  fi
  echo "checkov.sh: installing checkov==$CHECKOV_VERSION into $VENV" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  touch "$MARKER"
}

# Serialize concurrent bootstraps (two test runs at once must not build the venv twice).
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/lvp-checkov-$(id -u).lock"
  flock 9
fi
bootstrap
if command -v flock >/dev/null 2>&1; then
  flock -u 9
fi

if [ "${1:-}" = "--bootstrap-only" ]; then
  exit 0
fi

cd "$ROOT"
status=0
"$VENV/bin/checkov" -d terraform --framework terraform --quiet --compact \
  --skip-download --download-external-modules false "$@" || status=$?
# the image the compose file and ECS run
"$VENV/bin/checkov" -f Dockerfile --framework dockerfile --quiet --compact --skip-download || status=$?
exit "$status"
