#!/usr/bin/env bash
# Makes the toolchain pinned in rust-toolchain.toml available, with the arm64 Lambda target.
# - Already installed: nothing to do.
# - The machine's `stable` is that very version: register it under the pinned name, without a
#   download (CI machines come with one preinstalled toolchain and may not reach rustup's
#   servers). `rustup toolchain link` refuses official names, so this is the same symlink that
#   `link` would make.
# - Otherwise: let rustup install it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v rustup >/dev/null 2>&1 || { echo "no rustup: using $(rustc --version)"; exit 0; }
pinned=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
target=aarch64-unknown-linux-gnu
if rustup toolchain list | grep -q "^$pinned-"; then
  echo "toolchain $pinned is installed"
elif rustc +stable --version 2>/dev/null | grep -q "^rustc $pinned "; then
  # Targets cannot be added to a linked toolchain later: add it to `stable` first.
  rustup target list --toolchain stable --installed | grep -q "^$target\$" \
    || rustup target add --toolchain stable "$target"
  host=$(rustc +stable -vV | sed -n 's/^host: //p')
  ln -s "$(rustc +stable --print sysroot)" "${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$pinned-$host"
  echo "toolchain $pinned is the machine's stable; registered under its version"
else
  rustup toolchain install "$pinned" --profile minimal --component rustfmt,clippy --target "$target"
fi
cargo --version
