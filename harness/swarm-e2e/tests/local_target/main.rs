//! End-to-end tests against real engines on this machine (the local target).
//!
//! Every file in `scenarios/` is a test case: adding a file adds a trial here. The other
//! trials prove the promises around a run: a wrong expectation fails clearly, panics and
//! SIGINT still tear everything down, bad input exits 2, a kept cluster is reachable
//! with the docker CLI and `down` removes it. After every run the test asks the host
//! engine (and /sys/fs/cgroup, and the temp dir) for anything still carrying the run id.

//!
//! The trials live in files by topic; each has a `trials()` this collects.

use libtest_mimic::Arguments;

mod common;
mod do_fake;
mod engines;
mod interrupts;
mod isolation;
mod leftovers;
mod scenarios;
mod stacks;
#[path = "../support/mod.rs"]
mod support;

fn main() {
    swarm_e2e::install_crypto_provider();
    let mut args = Arguments::from_args();
    // Clusters share two cores: one at a time unless asked otherwise.
    args.test_threads.get_or_insert(1);
    let mut trials = scenarios::trials();
    trials.extend(leftovers::trials());
    trials.extend(isolation::trials());
    trials.extend(interrupts::trials());
    trials.extend(do_fake::trials());
    trials.extend(engines::trials());
    trials.extend(stacks::trials());
    libtest_mimic::run(&args, trials).exit();
}
