//! One span and one set of metrics per DSPy call, and the trace context that carries the call's
//! span into its worker.
//!
//! Each call ([`Bridge::run_module`](crate::Bridge::run_module) and so every typed `dspex` call,
//! and the calls and batches of an [`Instance`](crate::api::dspy::Instance)) runs in a
//! `dspy.call` [`tracing`] span with the module, signature, session, model, worker, attempt,
//! tokens in and out, latency and outcome as fields. The call's W3C `traceparent` travels in its
//! options: the worker's log lines carry its trace id. With the `otel` feature, when the span is
//! exported through OpenTelemetry (a `tracing-opentelemetry` layer), the worker records its own
//! spans (`dspy.worker`, then each module call, adapter step and LM request, with log records as
//! events) and sends them back; they are emitted here, through the global tracer provider, as
//! children of the call's span: one trace from the Rust caller through Python and back.
//!
//! Metrics go through the [`metrics`] facade (names below; the pool's own are in
//! [`snakepit::telemetry`]).

use std::time::Instant;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use tracing::field::Empty;

use crate::error::BridgeError;
use crate::proto as pb;

/// DSPy calls by `module` and `outcome` (`ok`, or the error's [`BridgeError::kind`]) (counter).
pub const CALLS: &str = "dspy_calls_total";
/// How long DSPy calls took, by `module`, in seconds (histogram).
pub const CALL_DURATION: &str = "dspy_call_duration_seconds";
/// LM tokens by `direction` (`input`, `output`) (counter).
pub const LM_TOKENS: &str = "dspy_lm_tokens_total";
/// LM requests made by calls (counter).
pub const LM_REQUESTS: &str = "dspy_lm_requests_total";
/// What the LM requests cost in USD, where LiteLLM knows the model's prices (a gauge that only
/// grows: the facade's counters are whole numbers).
pub const LM_COST: &str = "dspy_lm_cost_usd";

/// Describes the metrics to the installed recorder, once per process.
fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        describe_counter!(CALLS, "DSPy calls by module and outcome.");
        describe_histogram!(
            CALL_DURATION,
            metrics::Unit::Seconds,
            "Time DSPy calls took."
        );
        describe_counter!(LM_TOKENS, "LM tokens by direction.");
        describe_counter!(LM_REQUESTS, "LM requests made by DSPy calls.");
        describe_gauge!(
            LM_COST,
            "What LM requests cost in USD, where LiteLLM knows the prices."
        );
    });
}

/// The span and clock of one call.
pub(crate) struct CallScope {
    span: tracing::Span,
    started: Instant,
    module: String,
    traceparent: String,
    record_spans: bool,
}

impl CallScope {
    /// Opens the span of a call of `module` (a class path or a type name) with `signature`.
    pub(crate) fn new(module: &str, signature: &str, session: Option<&str>) -> Self {
        describe();
        let span = tracing::info_span!(
            "dspy.call",
            dspy.module = module,
            dspy.signature = signature,
            dspy.session = session.unwrap_or(""),
            gen_ai.request.model = Empty,
            worker = Empty,
            attempt = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            latency_ms = Empty,
            outcome = Empty,
            trace_id = Empty,
            otel.status_code = Empty,
        );
        let (traceparent, record_spans) = trace_context(&span);
        if let Some(trace_id) = traceparent.get(3..35) {
            span.record("trace_id", trace_id);
        }
        CallScope {
            span,
            started: Instant::now(),
            module: module.to_owned(),
            traceparent,
            record_spans,
        }
    }

    /// The call's span, to run the call in.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The call's options on the wire, with its trace context.
    pub(crate) fn options(&self, options: &crate::api::dspy::CallOptions) -> pb::CallOptions {
        pb::CallOptions {
            traceparent: self.traceparent.clone(),
            record_spans: self.record_spans,
            ..options.to_proto()
        }
    }

    /// Records what a worker answered: tokens, model, the worker's spans.
    pub(crate) fn received(&self, response: &pb::CallResponse) {
        if let Some(usage) = &response.usage {
            // As i64: OpenTelemetry has no unsigned integers (a u64 would become a string).
            let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.span
                .record("gen_ai.usage.input_tokens", signed(usage.prompt_tokens))
                .record(
                    "gen_ai.usage.output_tokens",
                    signed(usage.completion_tokens),
                );
            if !usage.model.is_empty() {
                self.span
                    .record("gen_ai.request.model", usage.model.as_str());
            }
            counter!(LM_TOKENS, "direction" => "input").increment(usage.prompt_tokens);
            counter!(LM_TOKENS, "direction" => "output").increment(usage.completion_tokens);
            counter!(LM_REQUESTS).increment(u64::from(usage.lm_calls));
            if usage.cost > 0.0 {
                gauge!(LM_COST).increment(usage.cost);
            }
        }
        #[cfg(feature = "otel")]
        if self.record_spans && !response.spans.is_empty() {
            otel::emit_worker_spans(&self.span, &response.spans);
        }
    }

    /// Records how the call ended: latency, outcome, metrics.
    pub(crate) fn finish<T>(&self, result: &Result<T, BridgeError>) {
        match result {
            Ok(_) => self.finish_as("ok", None),
            Err(e) => self.finish_as(e.kind(), Some(e)),
        }
    }

    /// Records how the call ended: `outcome` (`ok`, an error's kind, `cancelled`), and the
    /// error if there is one.
    pub(crate) fn finish_as(&self, outcome: &'static str, error: Option<&BridgeError>) {
        let elapsed = self.started.elapsed();
        self.span
            .record("latency_ms", elapsed.as_secs_f64() * 1e3)
            .record("outcome", outcome);
        if let Some(e) = error {
            self.span.record("otel.status_code", "ERROR");
            tracing::debug!(parent: &self.span, error = %e, "DSPy call failed");
        }
        let module = self.module.clone();
        counter!(CALLS, "module" => module.clone(), "outcome" => outcome).increment(1);
        histogram!(CALL_DURATION, "module" => module).record(elapsed);
    }
}

/// The call's `traceparent`, and whether the worker should record spans: the span's OpenTelemetry
/// context when it has a valid one (spans when it is sampled), else fresh ids for log correlation
/// alone; nothing when the span is disabled (no subscriber wants it).
fn trace_context(span: &tracing::Span) -> (String, bool) {
    if span.is_disabled() {
        return (String::new(), false);
    }
    #[cfg(feature = "otel")]
    if let Some(found) = otel::trace_context(span) {
        return found;
    }
    let trace_id = (u128::from(fastrand::u64(..)) << 64) | u128::from(fastrand::u64(1..));
    let span_id = fastrand::u64(1..);
    (format!("00-{trace_id:032x}-{span_id:016x}-00"), false)
}

#[cfg(feature = "otel")]
mod otel {
    //! The call's span as an OpenTelemetry parent, and the worker's spans emitted under it.

    use std::collections::HashMap;
    use std::time::{Duration, SystemTime};

    use opentelemetry::trace::{Status, TraceContextExt, Tracer};
    use opentelemetry::{Context, KeyValue, Value as OtelValue, global};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use crate::convert::value_from_proto;
    use crate::proto as pb;
    use crate::value::Value;

    /// The span's W3C `traceparent` and whether it is sampled, if it has an OpenTelemetry context.
    pub(super) fn trace_context(span: &tracing::Span) -> Option<(String, bool)> {
        let cx = span.context();
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        sc.is_valid().then(|| {
            (
                format!(
                    "00-{}-{}-{:02x}",
                    sc.trace_id(),
                    sc.span_id(),
                    sc.trace_flags().to_u8()
                ),
                sc.is_sampled(),
            )
        })
    }

    fn at(unix_nanos: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(unix_nanos)
    }

    fn attributes(map: Option<pb::MapValue>) -> Vec<KeyValue> {
        map.map(|m| m.entries)
            .unwrap_or_default()
            .into_iter()
            .map(|entry| {
                let value = match value_from_proto(entry.value) {
                    Ok(Value::Bool(b)) => OtelValue::Bool(b),
                    Ok(Value::Int(i)) => OtelValue::I64(i),
                    Ok(Value::Float(f)) => OtelValue::F64(f),
                    Ok(Value::String(s)) => OtelValue::String(s.into()),
                    Ok(other) => OtelValue::String(format!("{other:?}").into()),
                    Err(e) => OtelValue::String(format!("<{e}>").into()),
                };
                KeyValue::new(entry.key, value)
            })
            .collect()
    }

    /// Emits the worker's spans (parents first) as descendants of `parent`, with their own times.
    pub(super) fn emit_worker_spans(parent: &tracing::Span, spans: &[pb::WorkerSpan]) {
        let tracer = global::tracer("snakepit-grpc-bridge.worker");
        let root = parent.context();
        let mut emitted: HashMap<&[u8], Context> = HashMap::with_capacity(spans.len());
        let mut ends = Vec::with_capacity(spans.len());
        for span in spans {
            let parent_cx = emitted.get(span.parent_id.as_slice()).unwrap_or(&root);
            let events = span
                .events
                .iter()
                .map(|event| {
                    opentelemetry::trace::Event::new(
                        event.name.clone(),
                        at(event.time_unix_nanos),
                        attributes(event.attributes.clone()),
                        0,
                    )
                })
                .collect();
            let mut otel_span = tracer
                .span_builder(span.name.clone())
                .with_start_time(at(span.start_unix_nanos))
                .with_attributes(attributes(span.attributes.clone()))
                .with_events(events)
                .start_with_context(&tracer, parent_cx);
            if !span.error.is_empty() {
                opentelemetry::trace::Span::set_status(
                    &mut otel_span,
                    Status::error(span.error.clone()),
                );
            }
            let cx = parent_cx.with_span(otel_span);
            ends.push((span.id.as_slice(), at(span.end_unix_nanos)));
            emitted.insert(span.id.as_slice(), cx);
        }
        for (id, end) in ends.into_iter().rev() {
            if let Some(cx) = emitted.get(id) {
                cx.span().end_with_timestamp(end);
            }
        }
    }
}
