//! Reading the root model's replies: the ```repl blocks to run, and a final answer written
//! as `FINAL(...)` / `FINAL_VAR(...)` outside code (for prompts written for older `rlms`).

/// The code of every ```repl fenced block, in order.
pub fn repl_blocks(reply: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in reply.lines() {
        let trimmed = line.trim();
        match &mut current {
            None => {
                if let Some(tag) = trimmed.strip_prefix("```") {
                    if tag.trim() == "repl" {
                        current = Some(Vec::new());
                    }
                }
            }
            Some(lines) => {
                if trimmed == "```" {
                    let code = lines.join("\n");
                    if !code.trim().is_empty() {
                        blocks.push(dedent(&code));
                    }
                    current = None;
                } else {
                    lines.push(line);
                }
            }
        }
    }
    blocks
}

/// Removes indentation common to every non-blank line (a block nested in a list item).
fn dedent(code: &str) -> String {
    let indent = code
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    if indent == 0 {
        return code.to_string();
    }
    code.lines()
        .map(|l| {
            if l.len() >= indent {
                &l[indent..]
            } else {
                l.trim_start()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, PartialEq, Eq)]
pub enum FinalMarker {
    /// `FINAL(text)`: the text is the answer.
    Text(String),
    /// `FINAL_VAR(name)`: the REPL variable `name` holds the answer.
    Var(String),
}

/// A `FINAL_VAR(name)` or `FINAL(text)` starting a line outside the code blocks.
/// `FINAL(` may span lines: it runs to the last `)` of the text.
pub fn final_marker(reply: &str) -> Option<FinalMarker> {
    let prose = outside_code(reply);
    for line in prose.lines() {
        let line = line.trim_start();
        if let Some(rest) = line.strip_prefix("FINAL_VAR(") {
            let name = rest
                .split(')')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(['"', '\'']);
            if !name.is_empty() {
                return Some(FinalMarker::Var(name.to_string()));
            }
        }
    }
    let start = prose
        .lines()
        .scan(0usize, |offset, line| {
            let at = *offset;
            *offset += line.len() + 1;
            Some((at, line))
        })
        .find_map(|(at, line)| {
            let lead = line.len() - line.trim_start().len();
            line.trim_start()
                .starts_with("FINAL(")
                .then_some(at + lead + "FINAL(".len())
        })?;
    let rest = &prose[start..];
    let end = rest.rfind(')')?;
    Some(FinalMarker::Text(rest[..end].trim().to_string()))
}

/// The reply with its fenced code blocks removed.
fn outside_code(reply: &str) -> String {
    let mut out = String::with_capacity(reply.len());
    let mut in_fence = false;
    for line in reply.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_repl_block_in_order_and_ignores_other_fences() {
        let reply = "Let me look.\n```repl\nx = 1\nprint(x)\n```\nand\n```python\nnot_run()\n```\n```repl\n  y = 2\n  print(y)\n```";
        assert_eq!(
            repl_blocks(reply),
            vec!["x = 1\nprint(x)", "y = 2\nprint(y)"]
        );
    }

    #[test]
    fn an_unclosed_or_empty_block_is_not_run() {
        assert!(repl_blocks("```repl\nprint(1)").is_empty());
        assert!(repl_blocks("```repl\n\n```").is_empty());
    }

    #[test]
    fn final_markers_outside_code_are_found() {
        assert_eq!(
            final_marker("Done.\nFINAL(42)"),
            Some(FinalMarker::Text("42".into()))
        );
        assert_eq!(
            final_marker("FINAL(line one\nline (two))\n"),
            Some(FinalMarker::Text("line one\nline (two)".into()))
        );
        assert_eq!(
            final_marker("FINAL_VAR(result)"),
            Some(FinalMarker::Var("result".into()))
        );
        assert_eq!(
            final_marker("  FINAL_VAR('out')"),
            Some(FinalMarker::Var("out".into()))
        );
        assert_eq!(final_marker("```repl\nFINAL(1)\n```"), None);
        assert_eq!(final_marker("I will call FINAL(x) later"), None);
    }
}
