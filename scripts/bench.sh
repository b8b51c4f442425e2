#!/usr/bin/env bash
# Every benchmark, one after the other; each prints its own table (see README "Performance").
# Needs the moto venv (.venv-moto, made by .ci/run) for the end-to-end ones. About 30 minutes.
#   1. engine throughput and the cost of each stage (pages in memory, null sink)
#   2. end to end: the release xdr-sync under the Runtime API emulator, 100k alerts, against the
#      simulated tenant and moto, at 0 and 300 ms per page, next to a raw fetch; cold start
#   3. shapes of work: a week and a 30-day backlog of 100k alerts (xdr-sync) and a 90-day
#      backfill (xdr-backfill), at 0 and 300 ms per page, AWS's latency modelled in front of
#      moto, next to a sequential reader of full pages (the lower bound)
#   4. backfill: concurrent parts against one at a time, 300 ms per page
#   5. many tenants: a fan-out of 500 tenants, 40 at a time, 150 ms per page, and the cost model
# The 1M-alert memory run is manual: cargo run --release -p xdr-tests --bin bench-e2e -- 1000000 0
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked -p xdr-core --bench engine
cargo run --locked --release -q -p xdr-tests --bin bench-e2e -- 100000 0 300
cargo run --locked --release -q -p xdr-tests --bin bench-shapes -- week month backfill90 --latencies 0,300
cargo run --locked --release -q -p xdr-tests --bin bench-backfill -- 14 400 300
cargo run --locked --release -q -p xdr-tests --bin bench-tenants -- 500 40 150 30
