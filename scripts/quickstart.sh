#!/usr/bin/env bash
# The main job on a fresh Debian machine: set up, build the node image (once), and run
# the seed scenario on the local target with its phase timings.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A toolchain scripts/setup.sh just installed with rustup is not on PATH yet.
command -v cargo >/dev/null 2>&1 || . "$HOME/.cargo/env"
cargo build --release --locked --bin swarm-e2e
./target/release/swarm-e2e node-image build
./target/release/swarm-e2e run --timings scenarios/swarm-demo.toml
