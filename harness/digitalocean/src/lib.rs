//! DigitalOcean API v2 for swarm-e2e: [`client`] talks to the real API (or any base URL),
//! [`fake`] is a stateful fake of it for tests and dry runs.

pub mod client;
pub mod fake;
