//! Property test: whatever the bytes, parsing returns a value or located problems; it
//! never panics.

use proptest::prelude::*;
use swarm_e2e_model::parse_scenario;

const SEED: &str = include_str!("../../../scenarios/swarm-demo.toml");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = parse_scenario("fuzz.toml", &text);
    }

    #[test]
    fn mutated_seed_never_panics(cut in 0..SEED.len(), len in 0usize..40, insert in "[\\[\\]=\"a-z0-9.,{} \n-]{0,12}") {
        let mut text = SEED.to_string();
        let start = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let mut end = (start + len).min(text.len());
        while !text.is_char_boundary(end) { end -= 1; }
        text.replace_range(start..end, &insert);
        if let Err(e) = parse_scenario("fuzz.toml", &text) {
            prop_assert!(!e.problems.is_empty());
            for line in e.short_lines() {
                prop_assert!(line.starts_with("fuzz.toml:"));
            }
        }
    }
}
