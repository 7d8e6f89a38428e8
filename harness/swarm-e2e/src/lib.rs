//! swarm-e2e: end-to-end tests for multi-host Docker clusters.
//!
//! Data flows one way: scenario file -> validated model (`swarm-e2e-model`) -> provision
//! ([`local`]) -> engines ready ([`engine`]) -> cluster formed ([`cluster`]) -> checks
//! ([`checks`]) -> report ([`report`]) -> teardown ([`local::teardown`]). [`run`] drives
//! the phases. See ARCHITECTURE.md for the map and the invariants.

pub mod artifacts;
pub mod checks;
pub mod cluster;
pub mod conformance;
pub mod daemon;
pub mod do_run;
pub mod do_sweep;
pub mod do_target;
pub mod doctor;
pub mod engine;
pub mod fake_backer;
pub mod images;
pub mod labels;
pub mod local;
pub mod matrix;
pub mod pki;
pub mod report;
pub mod reports;
pub mod run;
pub mod wait;

/// Makes aws-lc-rs the process-wide rustls provider. Call first in every `main`: if a
/// dependency ever compiles in a second provider, rustls would otherwise panic on the
/// first TLS handshake.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
