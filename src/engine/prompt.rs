//! What the root model reads: rlmd's system prompt, the context summary, the turn markers
//! and the REPL output fed back after each reply.

use crate::contexts::group_digits;
use crate::domain::Tool;
use crate::repl::ExecOutcome;

/// rlmd's own system prompt. `{output_chars}` is filled in per run.
const SYSTEM_PROMPT: &str = r#"You answer a question about a context that is too large to read directly. The context lives in a Python REPL as the variable `context`; you see only a short description of it. You work by writing Python code that rlmd runs for you.

How to work:
- Put code in fenced blocks that start with ```repl and end with ```. Every such block in your reply runs, in order, in one namespace that persists across turns. Other code fences are not run.
- After your reply you see what each block printed (stdout and stderr, tracebacks included). Each block's output is cut after {output_chars} characters, so print summaries, counts and short slices, not whole documents. The value of a bare last expression is shown, as in a notebook.
- Look at the context before you answer: its type, its length, its first lines, how it is structured. Then search, filter, parse and compute in code. Numbers in your answer must come from code, not from guesses.

Available in the REPL:
- `context`: the data, exactly as submitted (a str, a list or a dict).
- `llm_query(prompt, model=None) -> str`: ask a language model one question. It can read far more than the REPL output shows you (roughly 100k tokens), so hand it large slices of the context when understanding text, not computing, is needed.
- `llm_query_batched(prompts, model=None) -> list[str]`: many independent questions at once, answered concurrently; the replies come back in the order of the prompts. Prefer it to a loop of `llm_query` calls. A failed prompt yields a string starting with "Error:" and does not affect the others.
- `rlm_query(prompt, model=None, schema=None) -> str` and `rlm_query_batched(prompts, model=None, schema=None) -> list[str]`: hand a sub-task to a helper that can itself use a REPL (a plain `llm_query` when no deeper level is allowed). With `schema` (a JSON Schema dict), the helper's answer must fit it and you get the parsed value (a dict, a list, ...) instead of a string.
- `SHOW_VARS()`: the variables you have defined so far.
- `answer`: a dict `{"content": "", "ready": False}`.

Finishing: when you are confident, set `answer["content"]` to your final answer (a string) and then `answer["ready"] = True` in a ```repl block. The run ends as soon as that block has run, and `answer["content"]` is returned to the user exactly as you set it, so make it the complete answer, in the form the question asks for. `FINAL_VAR("name")` (submit a variable) and `FINAL(value)` also work.

Go step by step: one or two blocks per turn, read the output, then continue. Do not submit an answer you have not checked against the output."#;

/// The system prompt, followed (even when the run brings its own) by the run's tools and
/// the shape its answer must have.
pub fn system_prompt(
    custom: Option<&str>,
    output_chars: usize,
    tools: &[Tool],
    answer_schema: Option<&serde_json::Value>,
) -> String {
    let mut text = match custom {
        Some(text) => text.to_string(),
        None => SYSTEM_PROMPT.replace("{output_chars}", &group_digits(output_chars as u64)),
    };
    if !tools.is_empty() {
        text.push_str("\n\nCustom tools, already defined in the REPL (call them from your code):");
        for tool in tools {
            text.push_str(&format!("\n- `{}`: {}", tool.name, tool.description.trim()));
        }
    }
    if let Some(schema) = answer_schema {
        text.push_str(&crate::answers::prompt_section(schema));
    }
    text
}

/// The first user message: what the context is (`described`, never the context itself)
/// and the task. A child run has no separate question: its task is its context.
pub fn context_summary(described: &str, question: Option<&str>) -> String {
    match question {
        Some(question) => format!(
            "The variable `context` holds {described}.\n\nThe question to answer:\n{question}"
        ),
        None => format!(
            "The variable `context` holds {described}. It is your task: read it in the REPL and \
             carry it out. Another program will use your answer."
        ),
    }
}

/// What the first message of a session's turn adds: the earlier turns are still there.
pub fn session_note(turn: u32) -> String {
    if turn == 0 {
        "\n\nThis is the first turn of a session: the variables you define stay in the REPL for \
         later turns. `context` is also `context_0`."
            .to_string()
    } else {
        let last = turn - 1;
        format!(
            "\n\nThis is turn {turn} of a session. `context` (also `context_{turn}`) is this turn's \
             context; the earlier turns' contexts are `context_0` … `context_{last}` and their \
             conversations `history_0` … `history_{last}` (lists of {{\"role\", \"content\"}} dicts). \
             Variables you defined in earlier turns are still defined."
        )
    }
}

/// The short marker that opens each turn.
pub fn turn_marker(iteration: u32, max_iterations: u32) -> String {
    if iteration == 1 {
        format!("Turn {iteration} of {max_iterations}. You have not looked at the context yet: start by exploring it in a ```repl block.")
    } else {
        format!("Turn {iteration} of {max_iterations}.")
    }
}

/// How one block's result is shown to the model.
pub fn block_report(index: usize, total: usize, outcome: &ExecOutcome) -> String {
    let heading = if total > 1 {
        format!("REPL output (block {index} of {total}):")
    } else {
        "REPL output:".to_string()
    };
    let mut body = String::new();
    if !outcome.stdout.is_empty() {
        body.push_str(&outcome.stdout);
    }
    if !outcome.stderr.is_empty() {
        if !body.is_empty() && !body.ends_with('\n') {
            body.push('\n');
        }
        body.push_str(&outcome.stderr);
    }
    if body.trim().is_empty() {
        body = "(no output)".into();
    }
    format!("{heading}\n{}", body.trim_end())
}

pub const NO_CODE_NOTICE: &str = "Your reply had no ```repl block, so nothing ran. Write code in a ```repl block, or submit your answer by setting answer[\"content\"] and answer[\"ready\"] = True in one.";

pub fn repl_reset_notice(reason: &str) -> String {
    format!("{reason}\nThe REPL was restarted: every variable you defined is gone (`context` is loaded again). Later blocks of this reply were not run.")
}

pub const FINAL_CALL: &str = "You have used all your turns. Using what you have learned so far, give your best final answer to the question now, as plain text, with no code.";

pub const FINAL_CALL_TYPED: &str = "You have used all your turns. Using what you have learned so far, give your best final answer to the question now: only the JSON that fits the answer schema, with no code and no other text.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_describes_the_context_without_including_it() {
        let context = crate::contexts::ContextRef::of_json(r#""secret line one\nline two""#);
        let summary = context_summary(&context.unwrap().description, Some("What is it?"));
        assert!(
            summary.contains("The variable `context` holds a str of 24 characters in 2 lines."),
            "{summary}"
        );
        assert!(!summary.contains("secret"));
        assert!(summary.ends_with("The question to answer:\nWhat is it?"));
    }
}
