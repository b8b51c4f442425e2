#!/usr/bin/env bash
# Builds both Lambda functions for provided.al2023 on arm64:
#   target/lambda/xdr-sync/bootstrap and target/lambda/xdr-backfill/bootstrap
# Installs cargo-lambda (with zig) into .venv-lambda and the Rust target if they are missing.
# `--setup` only installs them (for `sam build --beta-features`, which calls cargo lambda itself).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-lambda/bin/cargo-lambda ]; then
  python3 -m venv .venv-lambda
  .venv-lambda/bin/pip install --quiet --disable-pip-version-check cargo-lambda
fi
rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$' || rustup target add aarch64-unknown-linux-gnu
if [ "${1:-}" = "--setup" ]; then
  exit 0
fi
PATH="$PWD/.venv-lambda/bin:$PATH" cargo lambda build --release --arm64 --locked "$@"
target_dir="${CARGO_TARGET_DIR:-target}"
for function in xdr-sync xdr-backfill; do
  bootstrap="$target_dir/lambda/$function/bootstrap"
  test -x "$bootstrap" || { echo "missing $bootstrap"; exit 1; }
  echo "built $bootstrap ($(du -h "$bootstrap" | cut -f1))"
done
