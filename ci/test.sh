#!/usr/bin/env bash
# The test command: unit tests, the bad-scenario corpus, and every scenario in
# scenarios/ against real engines on this machine (builds the node image if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ci/setup.sh
cargo test --workspace --locked
