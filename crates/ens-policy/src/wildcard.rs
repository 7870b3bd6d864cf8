//! RAM wildcard patterns: `*` is any run of characters (even none), `?` is exactly one.
//!
//! Patterns come from users, so matching must stay cheap whatever they write: the greedy
//! two-pointer walk below revisits at most the input once per pattern character, O(len(p) x len(s))
//! in the worst case and linear in practice, with no recursion and no regex engine.

/// Whether letters must agree in case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    /// Resources: RAM compares ARNs exactly.
    Sensitive,
    /// Actions: RAM treats `ens:describeimages` and `ens:DescribeImages` alike.
    Insensitive,
}

/// True when `input` is matched by the whole of `pattern`.
pub(crate) fn matches(pattern: &str, input: &str, case: Case) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let input: Vec<char> = input.chars().collect();
    let (mut p, mut s) = (0, 0);
    // Where to resume after the most recent `*`: the pattern position just past it, and the input
    // position it has been stretched to. Only the latest star matters: any match an earlier star
    // could find by absorbing more is also found by the later one.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = input.get(s) {
        match pattern.get(p) {
            Some('*') => {
                p += 1;
                star = Some((p, s));
            }
            Some(&want) if want == '?' || same(want, c, case) => {
                p += 1;
                s += 1;
            }
            _ => match star {
                Some((after_star, absorbed)) => {
                    p = after_star;
                    s = absorbed + 1;
                    star = Some((after_star, s));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

fn same(a: char, b: char, case: Case) -> bool {
    a == b || (case == Case::Insensitive && a.to_lowercase().eq(b.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious exponential definition, trusted because it is a transcription of the rules.
    fn reference(pattern: &[char], input: &[char], case: Case) -> bool {
        match pattern.split_first() {
            None => input.is_empty(),
            Some(('*', rest)) => (0..=input.len()).any(|skip| reference(rest, &input[skip..], case)),
            Some((&want, rest)) => match input.split_first() {
                Some((&c, tail)) => (want == '?' || same(want, c, case)) && reference(rest, tail, case),
                None => false,
            },
        }
    }

    fn reference_str(pattern: &str, input: &str, case: Case) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let s: Vec<char> = input.chars().collect();
        reference(&p, &s, case)
    }

    #[test]
    fn star_matches_any_run_including_empty() {
        assert!(matches("*", "", Case::Sensitive));
        assert!(matches("*", "anything", Case::Sensitive));
        assert!(matches("ens:*", "ens:", Case::Sensitive));
        assert!(matches("ens:Describe*", "ens:DescribeImages", Case::Sensitive));
        assert!(matches("a*b*c", "abc", Case::Sensitive));
        assert!(matches("a*b*c", "axxbyyc", Case::Sensitive));
        assert!(!matches("a*b*c", "axxbyy", Case::Sensitive));
        assert!(matches("**", "", Case::Sensitive));
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        assert!(matches("m-?", "m-1", Case::Sensitive));
        assert!(!matches("m-?", "m-", Case::Sensitive));
        assert!(!matches("m-?", "m-12", Case::Sensitive));
        assert!(
            matches("m-??", "m-é1", Case::Sensitive),
            "one character, not one byte"
        );
        assert!(!matches("?", "", Case::Sensitive));
    }

    #[test]
    fn backtracks_to_the_latest_star() {
        assert!(matches("*ab", "aab", Case::Sensitive));
        assert!(matches("*a?b", "aaxaab", Case::Sensitive));
        assert!(matches("a*ab*b", "aabab", Case::Sensitive));
        assert!(!matches("*abc", "abab", Case::Sensitive));
    }

    #[test]
    fn case_rules_are_per_call() {
        assert!(matches("ens:describe*", "ens:DescribeImages", Case::Insensitive));
        assert!(!matches("ens:describe*", "ens:DescribeImages", Case::Sensitive));
        assert!(matches("IMAGE/M-?", "image/m-1", Case::Insensitive));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let input = "a".repeat(5000);
        let pattern = format!("{}b", "*a".repeat(200));
        assert!(!matches(&pattern, &input, Case::Sensitive));
        assert!(matches(
            &format!("{}a", "*a".repeat(200)),
            &input,
            Case::Sensitive
        ));
    }

    fn small_pattern() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just('a'), Just('b'), Just('A'), Just('*'), Just('?')],
            0..8,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    fn small_input() -> impl Strategy<Value = String> {
        // '*' and '?' in the input are ordinary characters; include them to prove it.
        proptest::collection::vec(
            prop_oneof![Just('a'), Just('b'), Just('A'), Just('*'), Just('?')],
            0..10,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn agrees_with_the_reference(pattern in small_pattern(), input in small_input()) {
            for case in [Case::Sensitive, Case::Insensitive] {
                prop_assert_eq!(
                    matches(&pattern, &input, case),
                    reference_str(&pattern, &input, case),
                    "pattern {:?} input {:?} {:?}", pattern, input, case
                );
            }
        }

        #[test]
        fn a_literal_matches_only_itself(pattern in "[aAb:]{0,4}", input in "[aAb:]{0,4}") {
            prop_assert!(matches(&pattern, &pattern, Case::Sensitive));
            prop_assert_eq!(matches(&pattern, &input, Case::Sensitive), pattern == input);
            prop_assert_eq!(
                matches(&pattern, &input, Case::Insensitive),
                pattern.to_lowercase() == input.to_lowercase()
            );
        }

        #[test]
        fn a_pattern_matches_its_own_text_when_wildcards_are_read_literally(pattern in small_pattern()) {
            // '*' can match itself and '?' can match any one character, so every pattern matches itself.
            prop_assert!(matches(&pattern, &pattern, Case::Sensitive));
        }
    }
}
