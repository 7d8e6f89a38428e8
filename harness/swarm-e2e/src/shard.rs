//! `--partition count:K/N|hash:K/N`: splitting a run's checks over N CI machines, as
//! nextest splits tests. The unit is a (scenario, check) pair, named as libtest names it
//! (`scenario::check`). `count` deals the pairs out in order (file order, then check
//! order), so shards are as even as possible; `hash` puts each pair by a stable hash of
//! its name (FNV-1a), so a pair stays in its shard when others are added or removed.
//! The same files give the same shards on every machine. A scenario with no check in a
//! shard is not provisioned there.

use std::str::FromStr;

use swarm_e2e_model::Scenario;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shard {
    Count { shard: u64, of: u64 },
    Hash { shard: u64, of: u64 },
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage =
            || format!("`{s}` is not a partition: write count:K/N or hash:K/N with 1 <= K <= N, e.g. count:1/3");
        let (kind, rest) = s.split_once(':').ok_or_else(usage)?;
        let (k, n) = rest.split_once('/').ok_or_else(usage)?;
        let (shard, of): (u64, u64) = (k.parse().map_err(|_| usage())?, n.parse().map_err(|_| usage())?);
        if shard == 0 || of == 0 || shard > of {
            return Err(usage());
        }
        match kind {
            "count" => Ok(Shard::Count { shard, of }),
            "hash" => Ok(Shard::Hash { shard, of }),
            _ => Err(usage()),
        }
    }
}

/// FNV-1a, 64 bits: stable across platforms, Rust versions and runs.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shard::Count { shard, of } => write!(f, "count:{shard}/{of}"),
            Shard::Hash { shard, of } => write!(f, "hash:{shard}/{of}"),
        }
    }
}

impl Shard {
    /// The scenarios with only this shard's checks; those left with none are dropped.
    pub fn select(&self, scenarios: Vec<Scenario>) -> Vec<Scenario> {
        let mut index = 0u64;
        scenarios
            .into_iter()
            .filter_map(|mut s| {
                let name = s.name.clone();
                s.checks.retain(|c| {
                    let mine = match *self {
                        Shard::Count { shard, of } => index % of == shard - 1,
                        Shard::Hash { shard, of } => fnv1a(&format!("{name}::{}", c.name)) % of == shard - 1,
                    };
                    index += 1;
                    mine
                });
                (!s.checks.is_empty()).then_some(s)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!("count:1/3".parse(), Ok(Shard::Count { shard: 1, of: 3 }));
        assert_eq!("hash:2/2".parse(), Ok(Shard::Hash { shard: 2, of: 2 }));
        for bad in [
            "count:0/3",
            "count:4/3",
            "hash:1/0",
            "slice:1/2",
            "count:1",
            "1/2",
            "count:a/b",
        ] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_hash_is_fnv1a() {
        // Published FNV-1a 64 test vectors: the shards must not move between versions.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
