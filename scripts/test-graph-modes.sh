#!/usr/bin/env bash
# The full Graph-mode matrix, for manual runs: the whole Rust suite (engine, Graph client over
# HTTP, and the real binaries under the Lambda Runtime API against moto) once per simulated Graph
# paging mode. CI runs every test in the strict mode (the simulator's default) plus the reduced
# matrix of tests/it/graph_modes.rs and the engine tests, which cover every mode themselves.
# Needs the moto venv that .ci/run creates. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
for mode in strict skip-links skiptoken no-count clamped sql-nulls lenient; do
  echo "== Graph mode: $mode"
  XDR_GRAPH_MODE=$mode cargo test --workspace --locked "$@"
done
