//! Model calls charged to the tree: admitted against its limits first, paid for after.

use std::time::Instant;

use futures_util::future::BoxFuture;
use serde_json::json;

use super::recorder::{CallInfo, Recorder};
use super::tree::Tree;
use crate::domain::{RunError, Sampling};
use crate::providers::{
    is_overload_status, ChatRequest, Completion, Message, ProviderError, ProviderHandle, Retrying,
    Slot,
};
use crate::store::{LlmCallRecord, Write};

/// Makes one model call for the tree. `Err` means a limit refused it (and stopped the tree);
/// otherwise the provider's result comes back with its record, already queued for storing
/// so that no stop can lose a call that was paid for. A call that pushes the tree over a
/// budget is kept and recorded, and the tree is stopped behind it.
pub async fn charged_call(
    tree: &Tree,
    recorder: &Recorder,
    provider: &ProviderHandle,
    call: &CallInfo<'_>,
    messages: &[Message],
    sampling: &Sampling,
) -> Result<(Result<Completion, ProviderError>, LlmCallRecord), RunError> {
    tree.admit_call()?;
    let slot = take_slot(recorder, provider, call).await;
    let started = Instant::now();
    // Each retry is announced, and stored, as its wait begins: a stream shows why a run
    // is idle. A "too many" answer cuts the provider's cap for every run.
    let announce = |retrying: Retrying| -> BoxFuture<'_, ()> {
        if retrying.status.is_some_and(is_overload_status) {
            overloaded(provider, &slot);
        }
        let mut data = json!(retrying);
        data["model"] = json!(call.model);
        data["kind"] = json!(call.kind);
        recorder.emit("provider.retrying", data);
        Box::pin(async move {
            if let Err(error) = recorder.flush().await {
                tracing::warn!(%error, "could not record a retry");
            }
        })
    };
    let request = ChatRequest {
        model: call.model,
        messages,
        sampling,
        on_retry: Some(&announce),
        // A conversation (a root, final or compaction call) grows turn by turn; a
        // sub-call's one message is rarely sent twice.
        cache_prompt: call.kind != "sub",
    };
    let mut result = provider.client.complete(request).await;
    match &mut result {
        Ok(completion) => {
            mark_if_cut_off(completion);
            slot.succeeded();
        }
        Err(ProviderError::Status { status, .. }) if is_overload_status(*status) => {
            overloaded(provider, &slot);
        }
        Err(_) => {}
    }
    drop(slot);
    let record = recorder.call_record(call, started.elapsed().as_millis() as i64, &result);
    crate::metrics::get().model_call(&record);
    recorder.keep(Write::LlmCall(record.clone()));
    let _ = tree.charge(record.input_tokens + record.output_tokens, record.cost_usd);
    Ok((result, record))
}

/// Waits for one of the provider's slots (its cap is shared by every run). A wait is
/// announced at once, so that a stream shows why a run is idle.
async fn take_slot(recorder: &Recorder, provider: &ProviderHandle, call: &CallInfo<'_>) -> Slot {
    if let Some(slot) = provider.limiter.try_acquire() {
        return slot;
    }
    let cap = provider.limiter.state();
    recorder.emit(
        "provider.waiting",
        json!({"provider": provider.name, "model": call.model, "kind": call.kind,
               "max_concurrency": cap.max, "concurrency_limit": cap.limit}),
    );
    let started = Instant::now();
    let (_, slot) = tokio::join!(recorder.flush(), provider.limiter.acquire());
    recorder.emit(
        "provider.acquired",
        json!({"provider": provider.name, "waited_ms": started.elapsed().as_millis() as u64}),
    );
    slot
}

/// The provider said "too many": its cap is cut (once per burst), which the log and the
/// metrics show.
fn overloaded(provider: &ProviderHandle, slot: &Slot) {
    if slot.overloaded() {
        let cap = provider.limiter.state();
        tracing::info!(provider = %provider.name, limit = cap.limit, max = cap.max,
                       "provider overloaded: concurrency cap cut");
    }
    crate::metrics::get().provider_overloaded(&provider.name, provider.limiter.state().limit);
}

/// A reply cut off at the output limit is kept, and says so.
fn mark_if_cut_off(completion: &mut Completion) {
    let cut = matches!(
        completion.finish_reason.as_deref(),
        Some("length" | "max_tokens" | "MAX_TOKENS")
    );
    if cut {
        completion
            .text
            .push_str("\n\n[rlmd: this reply was cut off at the model's output token limit]");
    }
}

/// What a call stores of the messages it sends: `{"keep": n, "append": [...]}`, the first
/// `n` messages of `before` (what the run's previous call sent) and then the rest of
/// `now`. A conversation mostly grows, so a turn stores its new messages, not the whole of
/// it again; a conversation rewritten (compacted, or a message changed) keeps less.
pub fn messages_sent(before: &[Message], now: &[Message]) -> String {
    let keep = before
        .iter()
        .zip(now)
        .take_while(|(a, b)| a.role == b.role && a.content == b.content)
        .count();
    json!({"keep": keep, "append": &now[keep..]}).to_string()
}
