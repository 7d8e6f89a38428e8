#!/usr/bin/env bash
# The test command: unit tests, the bad-scenario corpus, and every scenario in
# scenarios/ against real engines on this machine (builds the node image if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A toolchain scripts/setup.sh just installed with rustup is not on PATH yet.
command -v cargo >/dev/null 2>&1 || . "$HOME/.cargo/env"
cargo test --workspace --locked
