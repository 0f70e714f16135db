//! A reader of JSON in the plain shape [`super::publish_json`] and [`super::publication_read`] read directly:
//! objects whose keys the caller lists, strings without escapes, `null`, `true` and `false`, and arrays of objects,
//! with JSON whitespace between them. Anything else (an escape, a control character in a string, a number, an
//! unlisted or repeated key, an array where an object goes, bytes after the value) makes the reading give `None`,
//! and the caller leaves the frame to the general path ([`super::json`]). [`payload`] reads the payload object both
//! readers meet.
//!
//! Why not serde_json with derived types: it reads such a frame at about 500 MB/s (600 ns for a 300-byte
//! publication on the benchmark machine), a large part of a MessageLoop JSON client's time per message; sonic-rs
//! behind the same derived types is hardly faster, the derived visitors being much of the cost. Derived types also
//! take a JSON array for an object (`["1",{"channel":"a"}]` as a publish), which protojson refuses. Nothing here
//! recurses on the input: each caller reads a fixed depth.

/// A position in the text of one frame.
pub(super) struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(text: &'a str) -> Reader<'a> {
        Reader { text, at: 0 }
    }

    /// The whole text was one value: only whitespace is left.
    pub(super) fn end(mut self) -> Option<()> {
        self.space();
        (self.at == self.text.len()).then_some(())
    }

    /// An object whose keys are among `keys` (each at most once), each member's value read by `member` given the
    /// key's index in `keys`.
    pub(super) fn object(
        &mut self,
        keys: &[&str],
        mut member: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        self.token(b'{')?;
        if self.next_is(b'}') {
            return Some(());
        }
        let mut seen = 0u32;
        loop {
            let index = self.key(keys)?;
            let bit = 1u32.checked_shl(u32::try_from(index).ok()?)?;
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            self.token(b':')?;
            member(self, index)?;
            if !self.next_is(b',') {
                return self.token(b'}');
            }
        }
    }

    /// An array, each item read by `item`.
    pub(super) fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.token(b'[')?;
        if self.next_is(b']') {
            return Some(());
        }
        loop {
            item(self)?;
            if !self.next_is(b',') {
                return self.token(b']');
            }
        }
    }

    /// A string without escapes or control characters.
    pub(super) fn string(&mut self) -> Option<&'a str> {
        self.token(b'"')?;
        let end = string_end(self.rest())?;
        self.close(end)
    }

    /// A string without escapes, its bytes not looked at (base64, whose decoding refuses what a string may not
    /// hold), its end found with a vector search.
    pub(super) fn raw_string(&mut self) -> Option<&'a str> {
        self.token(b'"')?;
        let end = memchr::memchr2(b'"', b'\\', self.rest())?;
        self.close(end)
    }

    /// `null`, read, or nothing read.
    pub(super) fn null(&mut self) -> bool {
        self.word(b"null")
    }

    /// `true` or `false`.
    pub(super) fn boolean(&mut self) -> Option<bool> {
        if self.word(b"true") {
            return Some(true);
        }
        self.word(b"false").then_some(false)
    }

    /// The key `"…":` that comes next, as its index in `keys`.
    fn key(&mut self, keys: &[&str]) -> Option<usize> {
        self.token(b'"')?;
        let rest = self.rest();
        // The first byte tells most keys apart without a call to compare the rest.
        let index = keys.iter().position(|key| {
            let key = key.as_bytes();
            rest.first() == key.first()
                && rest.get(key.len()) == Some(&b'"')
                && rest.starts_with(key)
        })?;
        self.at += keys[index].len() + 1;
        Some(index)
    }

    /// The string whose closing quote is expected `end` bytes on.
    fn close(&mut self, end: usize) -> Option<&'a str> {
        if self.rest().get(end) != Some(&b'"') {
            return None;
        }
        let text = self.text.get(self.at..self.at + end)?;
        self.at += end + 1;
        Some(text)
    }

    fn rest(&self) -> &'a [u8] {
        self.text.as_bytes().get(self.at..).unwrap_or_default()
    }

    /// Steps over whitespace, then over `word` if it comes next.
    fn word(&mut self, word: &[u8]) -> bool {
        self.space();
        let next = self.rest().starts_with(word);
        if next {
            self.at += word.len();
        }
        next
    }

    /// Steps over whitespace, then over `byte` if it comes next.
    fn next_is(&mut self, byte: u8) -> bool {
        self.space();
        let next = self.rest().first() == Some(&byte);
        self.at += usize::from(next);
        next
    }

    /// Whitespace, then `byte`.
    fn token(&mut self, byte: u8) -> Option<()> {
        self.next_is(byte).then_some(())
    }

    fn space(&mut self) {
        let skip = self
            .rest()
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        self.at += skip;
    }
}

/// Where the first `"`, `\\` or control character of `bytes` is: looked for 16 bytes at a time, each block's
/// bytes all tested without an early exit (which the compiler turns into one vector test), then byte by byte in
/// the block that has one and in the rest.
fn string_end(bytes: &[u8]) -> Option<usize> {
    let stops = |b: u8| (b == b'"') | (b == b'\\') | (b < 0x20);
    let mut blocks = bytes.chunks_exact(16);
    let mut at = 0;
    for block in blocks.by_ref() {
        if block.iter().fold(false, |any, &b| any | stops(b)) {
            break;
        }
        at += 16;
    }
    let index = bytes.get(at..)?.iter().position(|&b| stops(b))?;
    Some(at + index)
}

/// A payload object, `{"binary"|"content_type"|"text"}`, with at most one of `binary` and `text` set, its base64
/// decoded: what both the publish and the publication carry.
#[derive(Debug, PartialEq)]
pub struct PlainPayload<'a> {
    pub content_type: &'a str,
    pub data: Option<PlainData<'a>>,
}

/// A payload's data: bytes (decoded) or text.
#[derive(Debug, PartialEq)]
pub enum PlainData<'a> {
    Binary(Vec<u8>),
    Text(&'a str),
}

/// Reads a [`PlainPayload`]; `None` for both data members set or base64 that does not decode.
pub(super) fn payload<'a>(reader: &mut Reader<'a>) -> Option<PlainPayload<'a>> {
    let mut content_type = "";
    let mut binary = None;
    let mut text = None;
    reader.object(&["binary", "content_type", "text"], |reader, key| {
        match key {
            0 => binary = optional(reader, Reader::raw_string)?,
            1 => content_type = reader.string()?,
            _ => text = optional(reader, Reader::string)?,
        }
        Some(())
    })?;
    let data = match (binary, text) {
        (Some(_), Some(_)) => return None,
        (Some(binary), None) => Some(PlainData::Binary(
            base64_simd::STANDARD.decode_to_vec(binary).ok()?,
        )),
        (None, Some(text)) => Some(PlainData::Text(text)),
        (None, None) => None,
    };
    Some(PlainPayload { content_type, data })
}

/// Reads an optional member: `null` is none, anything else is read by `value`.
pub(super) fn optional<'a, T>(
    reader: &mut Reader<'a>,
    value: impl FnOnce(&mut Reader<'a>) -> Option<T>,
) -> Option<Option<T>> {
    if reader.null() {
        return Some(None);
    }
    value(reader).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first stop at every place in texts of every length around the block size, against a plain search.
    #[test]
    fn string_end_finds_the_first_stop_wherever_it_is() {
        let plain = |bytes: &[u8]| {
            bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        };
        for len in 0..50 {
            let mut text = vec![b'a'; len];
            assert_eq!(string_end(&text), None, "{len}");
            for at in 0..len {
                for stop in [b'"', b'\\', 0, 0x1f, b'\n'] {
                    text[at] = stop;
                    assert_eq!(string_end(&text), plain(&text), "{len} {at} {stop}");
                    text[len - 1] = b'"';
                    assert_eq!(string_end(&text), plain(&text), "{len} {at} {stop}");
                    text.fill(b'a');
                }
            }
        }
        assert_eq!(string_end(&[0x20, 0x7f, 0x80, 0xff, b'"']), Some(4));
    }

    /// `{"a":…,"b":[…]}` as pairs, `None` when the reader refuses it.
    fn pairs(text: &str) -> Option<Vec<(String, String)>> {
        let mut reader = Reader::new(text);
        let mut out = Vec::new();
        let keys = ["s", "r", "b", "o", "a"];
        reader.object(&keys, |reader, key| {
            let value = match keys[key] {
                "s" => reader.string()?.to_owned(),
                "r" => reader.raw_string()?.to_owned(),
                "b" => reader.boolean()?.to_string(),
                "o" => format!("{:?}", optional(reader, Reader::string)?),
                _ => {
                    let mut items = 0;
                    reader.array(|reader| {
                        items += 1;
                        reader.object(&[], |_, _| None)
                    })?;
                    items.to_string()
                }
            };
            out.push((keys[key].to_owned(), value));
            Some(())
        })?;
        reader.end()?;
        Some(out)
    }

    #[test]
    fn the_plain_shape_is_read_with_whitespace_anywhere_between_tokens() {
        let read = pairs(
            " {\t\"s\" :\"é\",\n\"r\":\"a\u{1}\" ,\"b\": false,\"o\":null,\"a\":[ {} ,{}]}\r\n",
        );
        let expected = [
            ("s", "é"),
            ("r", "a\u{1}"),
            ("b", "false"),
            ("o", "None"),
            ("a", "2"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(read, Some(expected));
        assert_eq!(pairs("{}"), Some(vec![]));
        assert_eq!(pairs(r#"{"a":[]}"#), Some(vec![("a".into(), "0".into())]));
        assert_eq!(
            pairs(r#"{"o":"x"}"#),
            Some(vec![("o".into(), "Some(\"x\")".into())])
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for text in [
            "",
            "[]",
            "{",
            "{}x",
            "{},",
            r#"{"s":"a"}{}"#,
            r#"{"s":"a\"b"}"#,
            r#"{"ss":"a"}"#,
            r#"{"":"a"}"#,
            r#"{"s\"":"a"}"#,
            r#"{"r":"a\\b"}"#,
            "{\"s\":\"a\u{1}\"}",
            r#"{"s":"a","s":"b"}"#,
            r#"{"o":null,"o":null}"#,
            r#"{"x":"a"}"#,
            r#"{"\u0073":"a"}"#,
            r#"{"s":1}"#,
            r#"{"s":null}"#,
            r#"{"b":"true"}"#,
            r#"{"b":tru}"#,
            r#"{"a":[{}],}"#,
            r#"{"a":[{},]}"#,
            r#"{"a":[{"k":1}]}"#,
            r#"{"a":{}}"#,
            r#"{"s":"a",}"#,
            r#"{"s":"a""#,
            r#"{"s" "a"}"#,
            r#"{,"s":"a"}"#,
        ] {
            assert_eq!(pairs(text), None, "{text}");
        }
    }
}
