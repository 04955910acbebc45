//! Model calls charged to the tree: admitted against its limits first, paid for after.

use std::time::Instant;

use super::recorder::{CallInfo, Recorder};
use super::tree::Tree;
use crate::domain::{RunError, Sampling};
use crate::providers::{ChatModel, ChatRequest, Completion, Message, ProviderError};
use crate::store::{LlmCallRecord, Write};

/// Makes one model call for the tree. `Err` means a limit refused it (and stopped the tree);
/// otherwise the provider's result comes back with its record, already queued for storing
/// so that no stop can lose a call that was paid for. A call that pushes the tree over a
/// budget is kept and recorded, and the tree is stopped behind it.
pub async fn charged_call(
    tree: &Tree,
    recorder: &Recorder,
    provider: &dyn ChatModel,
    call: &CallInfo<'_>,
    messages: &[Message],
    sampling: &Sampling,
) -> Result<(Result<Completion, ProviderError>, LlmCallRecord), RunError> {
    tree.admit_call()?;
    let started = Instant::now();
    let request = ChatRequest {
        model: call.model,
        messages,
        sampling,
    };
    let result = provider.complete(request).await;
    let record = recorder.call_record(call, started.elapsed().as_millis() as i64, &result);
    recorder.keep(Write::LlmCall(record.clone()));
    let _ = tree.charge(record.input_tokens + record.output_tokens, record.cost_usd);
    Ok((result, record))
}
