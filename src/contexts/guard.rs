//! What valid JSON Python cannot rebuild, found as the bytes go by.

/// Deepest nesting of lists and objects accepted in a context. The REPL (Python 3.11,
/// recursion limit 1000) rebuilds it with `json.loads`, whose C decoder spends one level of
/// the limit per nested container: it fails at about 990 levels (measured: 990 loads, 995
/// raises RecursionError). Code that walks the context recursively fails sooner:
/// `copy.deepcopy`, two frames a level, at about 495 (490 copies, 500 raises). 400 leaves
/// room for either and the frames around it.
pub const MAX_CONTEXT_DEPTH: usize = 400;

/// Python 3.11 refuses to read an int of more than 4300 decimal digits
/// (`sys.int_info.default_max_str_digits`), so `json.loads` fails on one; floats of any
/// length, and huge numbers in range, are fine.
pub const MAX_INT_DIGITS: usize = 4300;

/// Finds what valid JSON Python cannot rebuild, fed in pieces: nesting deeper than
/// `MAX_CONTEXT_DEPTH`, or an integer longer than `MAX_INT_DIGITS` digits. (Whether it is
/// valid JSON at all is serde_json's to say.)
#[derive(Default)]
pub struct JsonGuard {
    depth: usize,
    state: Lexeme,
}

#[derive(Default, Clone, Copy)]
enum Lexeme {
    #[default]
    Between,
    InString {
        escaped: bool,
    },
    /// The integer part of a number, `digits` long so far.
    Integer {
        digits: usize,
    },
    /// A fraction or an exponent: any length is fine.
    Decimals,
}

impl JsonGuard {
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        for &byte in chunk {
            self.state = match self.state {
                Lexeme::InString { escaped: true } => Lexeme::InString { escaped: false },
                Lexeme::InString { escaped: false } => match byte {
                    b'\\' => Lexeme::InString { escaped: true },
                    b'"' => Lexeme::Between,
                    _ => Lexeme::InString { escaped: false },
                },
                Lexeme::Integer { digits } if byte.is_ascii_digit() => {
                    Lexeme::Integer { digits: digits + 1 }
                }
                Lexeme::Integer { digits } => match byte {
                    b'.' | b'e' | b'E' => Lexeme::Decimals,
                    _ => {
                        Self::check_integer(digits)?;
                        self.between(byte)?
                    }
                },
                Lexeme::Decimals if matches!(byte, b'0'..=b'9' | b'+' | b'-' | b'e' | b'E') => {
                    Lexeme::Decimals
                }
                Lexeme::Decimals | Lexeme::Between => self.between(byte)?,
            };
        }
        Ok(())
    }

    /// The check of a number the input ends with (a last line of JSON Lines).
    pub fn finish(&self) -> Result<(), String> {
        match self.state {
            Lexeme::Integer { digits } => Self::check_integer(digits),
            _ => Ok(()),
        }
    }

    fn between(&mut self, byte: u8) -> Result<Lexeme, String> {
        Ok(match byte {
            b'"' => Lexeme::InString { escaped: false },
            b'-' => Lexeme::Integer { digits: 0 },
            b'0'..=b'9' => Lexeme::Integer { digits: 1 },
            b'[' | b'{' => {
                self.depth += 1;
                if self.depth > MAX_CONTEXT_DEPTH {
                    return Err(format!(
                        "`context` is nested more than {MAX_CONTEXT_DEPTH} levels deep; \
                         the REPL cannot load it"
                    ));
                }
                Lexeme::Between
            }
            b']' | b'}' => {
                self.depth = self.depth.saturating_sub(1);
                Lexeme::Between
            }
            _ => Lexeme::Between,
        })
    }

    fn check_integer(digits: usize) -> Result<(), String> {
        if digits > MAX_INT_DIGITS {
            return Err(format!(
                "`context` holds an integer of {digits} digits; Python reads at most \
                 {MAX_INT_DIGITS} (send it as a string)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<(), String> {
        JsonGuard::default().feed(text.as_bytes())
    }

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn nesting_is_bounded_outside_strings_only() {
        assert!(json(&nested(MAX_CONTEXT_DEPTH)).is_ok());
        assert!(json(&nested(MAX_CONTEXT_DEPTH + 1)).is_err());
        let text = serde_json::to_string(&"[{".repeat(2000)).unwrap();
        assert!(json(&text).is_ok());
        let escaped = format!("[\"\\\"{}\"]", "[".repeat(1000));
        assert!(json(&escaped).is_ok());
    }

    #[test]
    fn long_integers_are_refused_and_long_floats_are_not() {
        let digits = |n: usize| "7".repeat(n);
        assert!(json(&format!("[{}]", digits(4300))).is_ok());
        assert!(json(&format!("[-{}]", digits(4300))).is_ok());
        assert!(json(&format!("[{}]", digits(4301))).is_err());
        assert!(json(&format!("{{\"a\": -{}}}", digits(5000))).is_err());
        assert!(json(&format!("[{}.5]", digits(5000))).is_ok());
        assert!(json(&format!("[1.{}]", digits(5000))).is_ok());
        assert!(json(&format!("[{}e3, 1]", digits(5000))).is_ok());
        assert!(json(&format!("[\"{}\"]", digits(5000))).is_ok());
        // A number the input ends with is checked too.
        let mut guard = JsonGuard::default();
        guard.feed(digits(4301).as_bytes()).unwrap();
        assert!(guard.finish().is_err());
    }
}
