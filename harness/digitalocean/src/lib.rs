//! DigitalOcean API v2 for swarm-e2e: [`client`] talks to the real API (or any base URL),
//! [`fake`] is a stateful fake of it for tests and dry runs.

#![deny(clippy::too_many_lines)]

pub mod client;
pub mod exchange;
pub mod fake;
pub mod scopes;
pub mod spec;

/// Droplet sizes with list prices (USD), shared by the fake and by `plan`'s estimate:
/// slug, memory MB, vCPUs, disk GB, price per month, price per hour. These are 2026 list
/// prices; the real API's `GET /v2/sizes` is the authority.
pub use fake::SIZES as SIZE_PRICES;
