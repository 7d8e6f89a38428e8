//! swarm-e2e: end-to-end tests for multi-host Docker clusters.
//!
//! Data flows one way: scenario file -> validated model (`swarm-e2e-model`) -> target
//! preflight and provisioning ([`target`]) -> engines ready ([`engine`]) -> cluster
//! formed ([`cluster`]) -> checks ([`checks`]) -> report ([`report`]) -> teardown
//! ([`targets::Target::teardown`]). [`run`] is the one loop that drives the phases;
//! [`cli`] is the command line. See ARCHITECTURE.md for the map and the invariants.

#![deny(clippy::too_many_lines)]

pub mod artifacts;
pub mod checks;
pub mod cli;
pub mod cluster;
pub mod color;
pub mod daemon;
pub mod doctor;
pub mod engine;
pub mod exit;
pub mod history;
pub mod hostlimits;
pub mod images;
pub mod marks;
pub mod matrix;
pub mod netfault;
pub mod pki;
pub mod progress;
pub mod report;
pub mod run;
pub mod shard;
pub mod stacks;
pub mod targets;
pub mod wait;
pub mod watchdog;

/// Makes aws-lc-rs the process-wide rustls provider. Call first in every `main`: if a
/// dependency ever compiles in a second provider, rustls would otherwise panic on the
/// first TLS handshake.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
