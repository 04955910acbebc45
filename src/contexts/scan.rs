//! One pass over a context, whatever its size, in memory bounded by a buffer: its SHA-256
//! (the id), whether the REPL can load it, and the line that describes it to the root model.

use std::io::{self, BufRead, BufReader, Read};

use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use super::guard::JsonGuard;
use super::{ContextFormat, ContextId};

/// Keys of a dict named in its description.
const KEYS_SHOWN: usize = 20;

/// What one pass over a context found.
#[derive(Debug, Clone, PartialEq)]
pub struct Scanned {
    pub id: ContextId,
    pub bytes: u64,
    pub description: String,
}

/// Reads `reader` to its end as a context of `format`. The error says what makes it one the
/// REPL could not load (not UTF-8, not JSON, a number Python refuses, nesting too deep).
pub fn scan(reader: impl Read, format: ContextFormat) -> Result<Scanned, String> {
    let mut tap = BufReader::with_capacity(1 << 16, Tap::new(reader, format));
    let described = match format {
        ContextFormat::Text => io::copy(&mut tap, &mut io::sink())
            .map(|_| None)
            .map_err(|e| e.to_string()),
        ContextFormat::Json => describe_json(&mut tap).map(Some),
        ContextFormat::Jsonl => describe_lines(&mut tap).map(Some),
    };
    // The tap's own finding (bad UTF-8, a refused number) explains a parse error best.
    let tap = tap.into_inner();
    let described = match (tap.refusal, described) {
        (Some(refusal), _) => return Err(refusal),
        (None, described) => described?,
    };
    if let Some(guard) = &tap.guard {
        guard.finish()?;
    }
    if let Some(partial) = tap.utf8.pending() {
        return Err(format!(
            "the context ends inside a UTF-8 sequence ({partial} bytes)"
        ));
    }
    let size = match format {
        ContextFormat::Text => String::new(),
        _ => format!(", {} bytes", group_digits(tap.bytes)),
    };
    let description = described.map(|shape| match shape.strip_suffix(')') {
        // "a dict with 2 keys ("a", "b")" -> "... ("a", "b"), 14 bytes)": the size of the
        // JSON tells the model what slicing it will take.
        Some(open) if format == ContextFormat::Jsonl => format!("{open}{size})"),
        _ if format == ContextFormat::Json && !shape.starts_with("a str") => {
            format!("{shape} ({} bytes as JSON)", group_digits(tap.bytes))
        }
        _ => shape,
    });
    let description = description.unwrap_or_else(|| {
        format!(
            "a str of {} characters in {} lines",
            group_digits(tap.utf8.chars),
            group_digits(tap.utf8.lines())
        )
    });
    Ok(Scanned {
        id: ContextId::from_digest(tap.hasher.finalize().into()),
        bytes: tap.bytes,
        description,
    })
}

/// Sees every byte read through it: hashes it, checks it is UTF-8 (counting characters and
/// lines as it goes) and, for JSON, that Python can rebuild what it holds.
struct Tap<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    utf8: Utf8Count,
    guard: Option<JsonGuard>,
    refusal: Option<String>,
}

impl<R> Tap<R> {
    fn new(inner: R, format: ContextFormat) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            utf8: Utf8Count::default(),
            guard: (format != ContextFormat::Text).then(JsonGuard::default),
            refusal: None,
        }
    }
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = &buf[..n];
        self.hasher.update(chunk);
        self.bytes += n as u64;
        let checked = self
            .utf8
            .feed(chunk)
            .and_then(|()| self.guard.as_mut().map_or(Ok(()), |g| g.feed(chunk)));
        if let Err(refusal) = checked {
            self.refusal = Some(refusal.clone());
            return Err(io::Error::new(io::ErrorKind::InvalidData, refusal));
        }
        Ok(n)
    }
}

/// Incremental UTF-8 validation, with the count of characters and of `\n`.
#[derive(Default)]
struct Utf8Count {
    /// The start of a character cut by the end of the last chunk.
    carry: Vec<u8>,
    chars: u64,
    newlines: u64,
    last: Option<u8>,
}

impl Utf8Count {
    fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        let Some(&last) = chunk.last() else {
            return Ok(());
        };
        self.last = Some(last);
        self.chars += chunk.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64;
        self.newlines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        let mut rest = chunk;
        if !self.carry.is_empty() {
            let take = rest.len().min(4 - self.carry.len());
            self.carry.extend_from_slice(&rest[..take]);
            match std::str::from_utf8(&self.carry) {
                Ok(_) => {
                    rest = &rest[take..];
                    self.carry.clear();
                }
                Err(e) if e.error_len().is_none() => {
                    // Still incomplete: only possible when the chunk was shorter than `take`.
                    return Ok(());
                }
                Err(e) if e.valid_up_to() > 0 => {
                    rest = &rest[take - (self.carry.len() - e.valid_up_to())..];
                    self.carry.clear();
                }
                Err(_) => return Err(Self::invalid()),
            }
        }
        match std::str::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                self.carry = rest[e.valid_up_to()..].to_vec();
                Ok(())
            }
            Err(_) => Err(Self::invalid()),
        }
    }

    fn invalid() -> String {
        "the context is not UTF-8 text".into()
    }

    fn pending(&self) -> Option<usize> {
        (!self.carry.is_empty()).then_some(self.carry.len())
    }

    /// Lines as `str::lines` counts them: a last line without its `\n` counts too.
    fn lines(&self) -> u64 {
        self.newlines + u64::from(self.last.is_some_and(|b| b != b'\n'))
    }
}

/// Checks one JSON document and describes its top level: a str, a list or a dict.
fn describe_json(reader: &mut impl BufRead) -> Result<String, String> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let shape = de.deserialize_any(TopLevel).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(shape)
}

/// Checks JSON Lines (one document per line; blank lines are skipped) and counts them.
fn describe_lines(reader: &mut impl BufRead) -> Result<String, String> {
    let mut records = 0u64;
    let mut line = 1u64;
    loop {
        // Skip the whitespace before the next record, counting the lines it spans.
        let buffer = reader.fill_buf().map_err(|e| e.to_string())?;
        if buffer.is_empty() {
            break;
        }
        let blank = buffer
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .count();
        if blank > 0 {
            line += buffer[..blank].iter().filter(|&&b| b == b'\n').count() as u64;
            reader.consume(blank);
            continue;
        }
        let one_line = OneLine {
            inner: &mut *reader,
            done: false,
        };
        let mut de = serde_json::Deserializer::from_reader(one_line);
        IgnoredAny::deserialize(&mut de)
            .and_then(|_| de.end())
            .map_err(|e| format!("JSON Lines, line {line}: {e}"))?;
        records += 1;
        line += 1;
    }
    Ok(format!(
        "a list of {} items (one per line of JSON Lines)",
        group_digits(records)
    ))
}

use serde::Deserialize as _;

/// Reads up to and including the next `\n`, then reports the end.
struct OneLine<'a, R> {
    inner: &'a mut R,
    done: bool,
}

impl<R: BufRead> Read for OneLine<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let available = self.inner.fill_buf()?;
        let (n, ends) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (available.len(), available.is_empty()),
        };
        let n = n.min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.inner.consume(n);
        self.done = ends && n > 0 && buf[n - 1] == b'\n' || n == 0;
        Ok(n)
    }
}

/// The description of a JSON document's top level, without building it.
struct TopLevel;

impl<'de> Visitor<'de> for TopLevel {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string, a list or an object")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
        Ok(format!(
            "a str of {} characters in {} lines",
            group_digits(text.chars().count() as u64),
            group_digits(text.lines().count() as u64)
        ))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        let mut items = 0u64;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            items += 1;
        }
        Ok(format!("a list of {} items", group_digits(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        let mut count = 0u64;
        let mut keys = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            count += 1;
            if keys.len() < KEYS_SHOWN {
                keys.push(format!("{key:?}"));
            }
        }
        let more = if count > keys.len() as u64 {
            ", ..."
        } else {
            ""
        };
        Ok(format!(
            "a dict with {} keys ({}{more})",
            group_digits(count),
            keys.join(", ")
        ))
    }
}

/// 1234567 -> "1,234,567".
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<Scanned, String> {
        scan(text.as_bytes(), ContextFormat::Json)
    }

    #[test]
    fn the_id_is_the_sha256_of_the_bytes() {
        let scanned = scan(&b"hello\n"[..], ContextFormat::Text).unwrap();
        assert_eq!(
            scanned.id.as_str(),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(scanned.bytes, 6);
        assert_eq!(scanned.description, "a str of 6 characters in 1 lines");
    }

    #[test]
    fn text_must_be_utf8_even_across_reads() {
        // A reader that hands over one byte at a time cuts every character.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = first;
                self.0 = rest;
                Ok(1)
            }
        }
        let text = "héllo wörld ✓ 𝄞\nline two";
        let scanned = scan(Trickle(text.as_bytes()), ContextFormat::Text).unwrap();
        assert_eq!(scanned.description, "a str of 24 characters in 2 lines");
        assert!(scan(Trickle(b"ab\xffcd"), ContextFormat::Text).is_err());
        assert!(scan(&b"ab\xe2\x9c"[..], ContextFormat::Text).is_err());
    }

    #[test]
    fn json_is_described_by_its_top_level() {
        assert_eq!(
            json("[1,2,3]").unwrap().description,
            "a list of 3 items (7 bytes as JSON)"
        );
        assert_eq!(
            json(r#"{"a": 1, "b": [2]}"#).unwrap().description,
            r#"a dict with 2 keys ("a", "b") (18 bytes as JSON)"#
        );
        assert_eq!(
            json(r#""two\nlines""#).unwrap().description,
            "a str of 9 characters in 2 lines"
        );
        assert!(json("42")
            .unwrap_err()
            .contains("a string, a list or an object"));
        assert!(json("[1, 2").is_err());
        assert!(json("[1] [2]").is_err());
    }

    #[test]
    fn json_lines_are_one_document_per_line() {
        let lines = "{\"a\": 1}\n\n[2, 3]\r\n\"four\"\n";
        let scanned = scan(lines.as_bytes(), ContextFormat::Jsonl).unwrap();
        assert_eq!(
            scanned.description,
            "a list of 3 items (one per line of JSON Lines, 25 bytes)"
        );
        let two_on_one = scan(&b"{\"a\": 1}\n1 2\n"[..], ContextFormat::Jsonl).unwrap_err();
        assert!(
            two_on_one.starts_with("JSON Lines, line 2: "),
            "{two_on_one}"
        );
        assert!(scan(&b"{\"a\": \n1}"[..], ContextFormat::Jsonl).is_err());
    }

    #[test]
    fn digits_are_grouped_by_thousands() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1_234_567), "1,234,567");
    }
}
