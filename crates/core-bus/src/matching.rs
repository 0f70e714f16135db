//! A pattern's [`Segment`]s and wildcard matching over them without recursion or backtracking: a pattern is run as
//! a set of positions over the topic's tokens (an NFA simulation), so one match costs at most pattern × topic steps,
//! whatever the number of `#`.

use std::sync::Arc;

/// One token of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A literal token, in escaped canonical form.
    Literal(Arc<str>),
    /// `*`: exactly one token.
    Star,
    /// `#`: zero or more tokens.
    Hash,
    /// `>`: one or more trailing tokens.
    Gt,
}

impl Segment {
    /// The canonical text of this segment.
    pub fn as_str(&self) -> &str {
        match self {
            Segment::Literal(token) => token,
            Segment::Star => "*",
            Segment::Hash => "#",
            Segment::Gt => ">",
        }
    }
}

/// Marks the positions reachable from the marked ones without consuming a token: past a `#`.
fn close(segments: &[Segment], states: &mut [bool]) {
    for p in 0..segments.len() {
        if states[p] && segments[p] == Segment::Hash {
            states[p + 1] = true;
        }
    }
}

/// Whether the pattern `segments` matches the topic `tokens` (escaped canonical tokens).
pub(crate) fn matches<'a>(segments: &[Segment], tokens: impl IntoIterator<Item = &'a str>) -> bool {
    let end = segments.len();
    let mut states = vec![false; end + 1];
    let mut next = vec![false; end + 1];
    states[0] = true;
    close(segments, &mut states);
    for token in tokens {
        next.fill(false);
        let mut alive = false;
        for (p, segment) in segments.iter().enumerate() {
            if !states[p] {
                continue;
            }
            alive = true;
            match segment {
                Segment::Hash => next[p] = true,
                Segment::Star => next[p + 1] = true,
                // `>` is the last segment: one token reaches the end, more tokens stay inside it.
                Segment::Gt => {
                    next[p] = true;
                    next[p + 1] = true;
                }
                Segment::Literal(literal) => {
                    if **literal == *token {
                        next[p + 1] = true;
                    }
                }
            }
        }
        if !alive {
            return false;
        }
        close(segments, &mut next);
        std::mem::swap(&mut states, &mut next);
    }
    states[end]
}

/// Whether every topic matched by `requested` is matched by `allowed` (both non-exact patterns' segments), by
/// dynamic programming over the two suffixes: (allowed + 1) × (requested + 1) cells.
pub(crate) fn covers(allowed: &[Segment], requested: &[Segment]) -> bool {
    let (m, n) = (allowed.len(), requested.len());
    let width = n + 1;
    // cell(i, j): allowed[i..] covers requested[j..]
    let mut cells = vec![false; (m + 1) * width];
    cells[m * width + n] = true;
    // needs_token[j]: requested[j..] matches no empty token list (it has a segment other than `#`)
    let mut needs_token = vec![false; width];
    for j in (0..n).rev() {
        needs_token[j] = needs_token[j + 1] || requested[j] != Segment::Hash;
    }
    for i in (0..m).rev() {
        for j in (0..=n).rev() {
            let value = match (&allowed[i], requested.get(j)) {
                (Segment::Hash, _) => {
                    cells[(i + 1) * width + j] || (j < n && cells[i * width + j + 1])
                }
                (Segment::Gt, Some(_)) => needs_token[j],
                (Segment::Star, Some(Segment::Literal(_) | Segment::Star)) => {
                    cells[(i + 1) * width + j + 1]
                }
                (Segment::Literal(x), Some(Segment::Literal(y))) => {
                    x == y && cells[(i + 1) * width + j + 1]
                }
                _ => false,
            };
            cells[i * width + j] = value;
        }
    }
    cells[0]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::topic::{Pattern, Topic};

    /// The obvious backtracking matcher the linear one must agree with.
    fn reference(segments: &[Segment], tokens: &[&str]) -> bool {
        match segments.split_first() {
            None => tokens.is_empty(),
            Some((Segment::Gt, _)) => !tokens.is_empty(),
            Some((Segment::Hash, rest)) => {
                (0..=tokens.len()).any(|skip| reference(rest, &tokens[skip..]))
            }
            Some((Segment::Star, rest)) => !tokens.is_empty() && reference(rest, &tokens[1..]),
            Some((Segment::Literal(lit), rest)) => {
                tokens.first().is_some_and(|t| **t == **lit) && reference(rest, &tokens[1..])
            }
        }
    }

    /// The backtracking containment check the DP must agree with.
    fn reference_covers(a: &[Segment], r: &[Segment]) -> bool {
        match (a.split_first(), r.split_first()) {
            (None, None) => true,
            (Some((Segment::Hash, a_rest)), _) => {
                (0..=r.len()).any(|skip| reference_covers(a_rest, &r[skip..]))
            }
            (Some((Segment::Gt, _)), Some(_)) => r.iter().any(|s| *s != Segment::Hash),
            (
                Some((Segment::Star, a_rest)),
                Some((Segment::Literal(_) | Segment::Star, r_rest)),
            ) => reference_covers(a_rest, r_rest),
            (Some((Segment::Literal(x), a_rest)), Some((Segment::Literal(y), r_rest))) => {
                x == y && reference_covers(a_rest, r_rest)
            }
            _ => false,
        }
    }

    fn pattern_text() -> impl Strategy<Value = String> {
        let token = prop_oneof![Just("a"), Just("b"), Just("*"), Just("#"), Just("#")];
        (proptest::collection::vec(token, 1..9), any::<bool>()).prop_map(|(tokens, gt)| {
            let mut text = tokens.join(".");
            if gt {
                text.push_str(".>");
            }
            text
        })
    }

    fn topic_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..10)
            .prop_map(|t| t.join("."))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn linear_matcher_agrees_with_backtracking(pattern in pattern_text(), topic in topic_text()) {
            let pattern = Pattern::parse(&pattern).unwrap();
            let topic = Topic::parse(&topic).unwrap();
            let tokens: Vec<&str> = topic.tokens().collect();
            prop_assert_eq!(pattern.matches(&topic), reference(pattern.segments(), &tokens), "{} {}", pattern, topic);
        }

        #[test]
        fn covers_agrees_with_backtracking(allowed in pattern_text(), requested in pattern_text()) {
            let allowed = Pattern::parse(&allowed).unwrap();
            let requested = Pattern::parse(&requested).unwrap();
            prop_assert_eq!(
                covers(allowed.segments(), requested.segments()),
                reference_covers(allowed.segments(), requested.segments())
            );
        }

        /// Coverage is sound: a topic the requested pattern matches is matched by a pattern that covers it.
        #[test]
        fn covered_topics_are_allowed(allowed in pattern_text(), requested in pattern_text(), topic in topic_text()) {
            let allowed = Pattern::parse(&allowed).unwrap();
            let requested = Pattern::parse(&requested).unwrap();
            let topic = Topic::parse(&topic).unwrap();
            if requested.is_covered_by(&allowed) && requested.matches(&topic) {
                prop_assert!(allowed.matches(&topic), "{} covers {} but not {}", allowed, requested, topic);
            }
        }
    }

    #[test]
    fn gt_does_not_cover_a_hash_that_matches_nothing() {
        let allowed = Pattern::parse("a.>").unwrap();
        assert!(!Pattern::parse("a.#").unwrap().is_covered_by(&allowed));
        assert!(Pattern::parse("a.#.b").unwrap().is_covered_by(&allowed));
        assert!(Pattern::parse("a.*.#").unwrap().is_covered_by(&allowed));
    }

    #[test]
    fn many_hashes_match_a_long_topic_at_once() {
        let pattern = Pattern::parse("#.a.#.b.#.c.#.d.#.e.#.f.#.z").unwrap();
        let topic = Topic::parse(&vec!["a"; 120].join(".")).unwrap();
        assert!(!pattern.matches(&topic));
        assert!(!covers(
            pattern.segments(),
            Pattern::parse(&vec!["*"; 120].join("."))
                .unwrap()
                .segments()
        ));
    }
}
