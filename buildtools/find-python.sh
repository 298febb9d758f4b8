#!/usr/bin/env bash
# Print a folder that holds the Lambda runtime's Python (`python3.<minor>`, default 3.13), for
# `sam build` (which needs it on PATH) and the bytecode compilation. Looks, in order:
#   1. on PATH;
#   2. in pyenv's versions ($PYENV_ROOT, ~/.pyenv), not necessarily on PATH;
#   3. Debian's package (Debian 13 "trixie" ships python3.13): installed with apt-get when run as root.
# Fails with what to install otherwise (tests/buildtools/test_find_python.py runs each way).
set -euo pipefail
version="${1:-3.13}"
exe="python${version}"
has_pip() { "$1" -m pip --version >/dev/null 2>&1; }

if found="$(command -v "$exe" 2>/dev/null)" && "$found" -c pass 2>/dev/null && has_pip "$found"; then
  dirname "$found"; exit 0
fi
for root in "${PYENV_ROOT:-}" "${HOME:+$HOME/.pyenv}"; do
  [ -n "$root" ] || continue
  for candidate in "$root"/versions/"$version".*/bin/"$exe"; do
    if [ -x "$candidate" ] && "$candidate" -c pass 2>/dev/null && has_pip "$candidate"; then
      dirname "$candidate"; exit 0
    fi
  done
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq >&2 || true
  if apt-cache policy "$exe" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$exe" "${exe}-venv" python3-pip >&2
    found="$(command -v "$exe")"
    if has_pip "$found"; then dirname "$found"; exit 0; fi
  fi
fi
cat >&2 <<MSG
No Python ${version} with pip found (the functions run on Python ${version}, and \`sam build\` needs it
on PATH to install their dependencies). Install one of:
  - Debian 13 or later: apt-get install ${exe} ${exe}-venv python3-pip
  - pyenv: pyenv install ${version}
  - any ${exe} with pip, on PATH
MSG
exit 1
