//! Typed answers: a run's `answer_schema` (a JSON Schema), checked when the run is
//! submitted, and what its code submits, checked against it before the run may end.

use std::fmt::Write as _;

use serde_json::Value;

/// The largest schema accepted, as JSON text: it is shown to the model in every call.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// How many failures the model is shown for one candidate (the rest are counted).
const MAX_FAILURES_SHOWN: usize = 20;

/// A compiled answer schema.
pub struct AnswerSchema {
    validator: jsonschema::Validator,
}

/// An answer as the code submitted it: its text, and its JSON when the code gave a value
/// that is not a str (a dict, a list, a number, ...). A str is read as JSON text, or for a
/// schema that takes strings, as the string itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub text: String,
    pub json: Option<String>,
}

impl Candidate {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            json: None,
        }
    }

    /// The candidate as the REPL could hold it again: the value, or the string.
    pub fn value(&self) -> Value {
        self.json
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_else(|| Value::String(self.text.clone()))
    }

    /// What is kept of a candidate that is not accepted: its JSON, or its text.
    pub fn shown(&self) -> &str {
        self.json.as_deref().unwrap_or(&self.text)
    }
}

/// Why a candidate does not fit: one line per failing place.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub failures: Vec<Failure>,
    /// The failures left out of `failures`.
    pub more: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Failure {
    /// A JSON Pointer into the candidate (`""` is the whole value).
    pub path: String,
    pub message: String,
}

impl AnswerSchema {
    /// Compiles `schema`, or says why it is not a usable JSON Schema. Only the schema's
    /// own `$defs` can be referred to: nothing is ever fetched.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
            return Err("a JSON Schema is an object (or true / false)".into());
        }
        let size = schema.to_string().len();
        if size > MAX_SCHEMA_BYTES {
            return Err(format!(
                "the schema is {size} bytes of JSON; the limit is {MAX_SCHEMA_BYTES}"
            ));
        }
        let validator = jsonschema::validator_for(schema).map_err(|error| {
            // Checked against the meta-schema, the schema is the instance: this is where
            // in it the fault is.
            let at = error.instance_path().to_string();
            match at.as_str() {
                "" => error.to_string(),
                _ => format!("{error} (at {at})"),
            }
        })?;
        Ok(Self { validator })
    }

    /// The value `candidate` stands for, if it fits; else why it does not. A string is
    /// read as JSON first and taken as a plain string only if that fits instead.
    pub fn check(&self, candidate: &Candidate) -> Result<Value, Rejection> {
        match &candidate.json {
            Some(json) => match serde_json::from_str::<Value>(json) {
                Ok(value) => self.fits(value),
                Err(error) => Err(Rejection::one("", format!("not valid JSON: {error}"))),
            },
            None => {
                let text = &candidate.text;
                let parsed = serde_json::from_str::<Value>(strip_fence(text));
                if let Ok(value) = &parsed {
                    if self.validator.is_valid(value) {
                        return Ok(value.clone());
                    }
                }
                let plain = Value::String(text.clone());
                if self.validator.is_valid(&plain) {
                    return Ok(plain);
                }
                match parsed {
                    Ok(value) => self.fits(value),
                    Err(error) => Err(Rejection::one(
                        "",
                        format!(
                            "the answer is a string that is not JSON ({error}), and the \
                             schema does not take it as a plain string"
                        ),
                    )),
                }
            }
        }
    }

    fn fits(&self, value: Value) -> Result<Value, Rejection> {
        let mut failures = Vec::new();
        let mut more = 0;
        for error in self.validator.iter_errors(&value) {
            if failures.len() == MAX_FAILURES_SHOWN {
                more += 1;
                continue;
            }
            failures.push(Failure {
                path: error.instance_path().to_string(),
                message: error.to_string(),
            });
        }
        match failures.is_empty() {
            true => Ok(value),
            false => Err(Rejection { failures, more }),
        }
    }
}

impl Rejection {
    fn one(path: &str, message: String) -> Self {
        Self {
            failures: vec![Failure {
                path: path.into(),
                message,
            }],
            more: 0,
        }
    }

    /// One line: the first failure, and how many more.
    pub fn summary(&self) -> String {
        let mut line = match self.failures.first() {
            Some(f) if f.path.is_empty() => f.message.clone(),
            Some(f) => format!("at {}: {}", f.path, f.message),
            None => String::new(),
        };
        let others = self.failures.len().saturating_sub(1) + self.more;
        if others > 0 {
            let _ = write!(line, " (and {others} more)");
        }
        line
    }

    /// What the model is told: every failing path and why.
    pub fn feedback(&self) -> String {
        let mut text = String::from(
            "The answer was not accepted: it does not fit the answer schema. The run goes on; \
             answer[\"ready\"] is False again (answer[\"content\"] still holds the candidate).\n\
             What failed:",
        );
        for failure in &self.failures {
            let at = match failure.path.as_str() {
                "" => "the answer itself".to_string(),
                path => format!("`{path}`"),
            };
            let _ = write!(text, "\n- at {at}: {}", failure.message);
        }
        if self.more > 0 {
            let _ = write!(text, "\n- ... and {} more", self.more);
        }
        text.push_str("\nFix these and submit again.");
        text
    }
}

/// The value a typed run's stored answer (its JSON text) stands for. Text that is not
/// JSON (never stored by rlmd, but a database can be edited) is shown as the string.
pub fn stored_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// A reply's answer may come fenced as ```json ... ```; the fence is not part of it.
fn strip_fence(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(body) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let Some(body) = body.strip_suffix("```") else {
        return trimmed;
    };
    // Drop the info string (`json`) on the opening line.
    match body.split_once('\n') {
        Some((info, rest)) if !info.contains(['{', '[', '"']) => rest.trim(),
        _ => body.trim(),
    }
}

/// A plain sub-call's prompt when its reply must fit `schema`.
pub fn plain_call_prompt(prompt: &str, schema: &Value) -> String {
    format!(
        "{prompt}\n\nReply with only JSON that fits this JSON Schema, and no other text:\n```json\n{schema}\n```"
    )
}

/// The system prompt's part about the shape of the answer.
pub fn prompt_section(schema: &Value) -> String {
    let pretty = serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string());
    format!(
        "\n\nThe answer must be JSON that fits this JSON Schema:\n```json\n{pretty}\n```\n\
         Set `answer[\"content\"]` to the value itself (a dict, a list, a number, ...) or to \
         its JSON text, then `answer[\"ready\"] = True`. rlmd checks it against the schema: \
         if it does not fit, the run does not end and you are told which parts failed."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A value the code submitted, as the REPL reports it.
    fn value(json: &str) -> Candidate {
        Candidate {
            text: String::new(),
            json: Some(json.into()),
        }
    }

    fn person() -> AnswerSchema {
        AnswerSchema::compile(&json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["name", "age"],
            "additionalProperties": false
        }))
        .unwrap()
    }

    #[test]
    fn a_value_that_fits_is_returned_as_json() {
        let schema = person();
        let json = value(r#"{"name": "Ada", "age": 36}"#);
        assert_eq!(schema.check(&json), Ok(json!({"name": "Ada", "age": 36})));
        let text = Candidate::text("```json\n{\"name\": \"Ada\", \"age\": 36}\n```");
        assert_eq!(schema.check(&text), Ok(json!({"name": "Ada", "age": 36})));
    }

    #[test]
    fn each_failing_path_is_named() {
        let schema = person();
        let bad = value(r#"{"name": 5, "age": -1, "tags": ["a", 2]}"#);
        let rejection = schema.check(&bad).unwrap_err();
        let paths: Vec<_> = rejection.failures.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"/name"), "{paths:?}");
        assert!(paths.contains(&"/age"), "{paths:?}");
        assert!(paths.contains(&"/tags/1"), "{paths:?}");
        let feedback = rejection.feedback();
        assert!(
            feedback.contains("at `/tags/1`: 2 is not of type \"string\""),
            "{feedback}"
        );
        let missing = schema.check(&value("{}")).unwrap_err();
        assert!(
            missing.feedback().contains("the answer itself"),
            "{missing:?}"
        );
    }

    #[test]
    fn a_plain_string_fits_a_string_schema_and_json_text_is_read_first() {
        let schema = AnswerSchema::compile(&json!({"type": "string"})).unwrap();
        assert_eq!(schema.check(&Candidate::text("Paris")), Ok(json!("Paris")));
        assert_eq!(schema.check(&Candidate::text("42")), Ok(json!("42")));
        let numbers = AnswerSchema::compile(&json!({"type": "integer"})).unwrap();
        assert_eq!(numbers.check(&Candidate::text(" 42 ")), Ok(json!(42)));
        let prose = numbers.check(&Candidate::text("forty-two"));
        assert!(prose.unwrap_err().failures[0].message.contains("not JSON"));
    }

    #[test]
    fn a_bad_schema_is_refused_with_a_reason() {
        for bad in [
            json!({"type": "banana"}),
            json!({"properties": 5}),
            json!({"required": "name"}),
            json!([1, 2]),
            json!({"$ref": "https://example.com/schema.json"}),
        ] {
            assert!(AnswerSchema::compile(&bad).is_err(), "{bad}");
        }
        let why = AnswerSchema::compile(&json!({"type": "banana"}))
            .err()
            .unwrap();
        assert!(why.contains("banana"), "{why}");
    }

    #[test]
    fn failures_past_the_cap_are_counted() {
        let schema = AnswerSchema::compile(&json!({"type": "array", "items": {"type": "string"}}));
        let many: Vec<i32> = (0..30).collect();
        let rejection = schema
            .unwrap()
            .check(&value(&json!(many).to_string()))
            .unwrap_err();
        assert_eq!((rejection.failures.len(), rejection.more), (20, 10));
    }
}
