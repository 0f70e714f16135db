//! Route globs as upstream matches them: `*` spans any run of characters, dots included, `?` is exactly
//! one character, everything else matches itself.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and the text position it currently stands for the end of.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some('?') => {
                p += 1;
                t += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn star_spans_dots_and_question_mark_one_character() {
        assert!(matches("*", ""));
        assert!(matches("*", "a.b.c"));
        assert!(matches("orders.*", "orders.eu.create"));
        assert!(matches("*.create", "orders.eu.create"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("get?", "getx"));
        assert!(!matches("get?", "get"));
        assert!(matches("", ""));
        assert!(!matches("", "x"));
        assert!(matches("$authenticate", "$authenticate"));
        assert!(!matches("orders", "orders.eu"));
    }
}
