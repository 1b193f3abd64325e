#![allow(missing_docs)]
//! One typed prediction, traced from the Rust caller through the Python worker and back, exported
//! through OpenTelemetry (an in-memory exporter); and the call metrics. Real workers, real DSPy,
//! the rule LM (10 prompt and 5 completion tokens per request).

mod support;

#[path = "../../pool/tests/support/captured_metrics.rs"]
mod captured_metrics;

use captured_metrics::Captured;
use dspex::prelude::*;
use dspex_tests::rag::{Rewrite, example};
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry::{KeyValue, Value as OtelValue};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use support::run;
use tracing::Instrument;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a OtelValue> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span {name} in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

#[test]
fn a_typed_prediction_is_one_trace_across_the_process_boundary_with_metrics() {
    let captured = Captured::install();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let subscriber = tracing_subscriber::registry().with(
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("dspex-tests"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
    );
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    run(async {
        let dspex =
            support::example_lm_builder(Lm::custom("dspex_rule_lm.RuleLM", Default::default()), 1)
                .start()
                .await
                .expect("dspex starts");
        let rewrite = Predict::<Rewrite>::new(&dspex);
        let out = rewrite
            .call(example("q", 3, "").input)
            .instrument(tracing::info_span!("handle_request"))
            .await
            .unwrap();
        assert_eq!(out.query, "find-q3");
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().unwrap();

        let request = named(&spans, "handle_request");
        let call = named(&spans, "dspy.call");
        let worker = named(&spans, "dspy.worker");
        let lm = named(&spans, "dspy.lm");
        let trace = request.span_context.trace_id();
        for span in [call, worker, lm] {
            assert_eq!(
                span.span_context.trace_id(),
                trace,
                "{} in the trace",
                span.name
            );
        }
        assert_eq!(call.parent_span_id, request.span_context.span_id());
        assert_eq!(
            worker.parent_span_id,
            call.span_context.span_id(),
            "the Python span is the Rust call span's child"
        );
        // The LM request descends from the worker span (through its module and adapter spans).
        let by_id: std::collections::HashMap<SpanId, &SpanData> = spans
            .iter()
            .map(|s| (s.span_context.span_id(), s))
            .collect();
        let mut up = lm.parent_span_id;
        while up != worker.span_context.span_id() {
            up = by_id.get(&up).expect("an exported ancestor").parent_span_id;
        }
        // Token counts on both sides of the boundary.
        assert_eq!(
            attribute(call, "gen_ai.usage.input_tokens"),
            Some(&OtelValue::I64(10))
        );
        assert_eq!(
            attribute(call, "gen_ai.usage.output_tokens"),
            Some(&OtelValue::I64(5))
        );
        assert_eq!(
            attribute(lm, "gen_ai.usage.input_tokens"),
            Some(&OtelValue::I64(10))
        );
        assert_eq!(
            attribute(worker, "gen_ai.usage.output_tokens"),
            Some(&OtelValue::I64(5))
        );
        assert_eq!(
            attribute(call, "dspy.module"),
            Some(&OtelValue::from("dspy.Predict"))
        );
        assert_eq!(attribute(call, "outcome"), Some(&OtelValue::from("ok")));
        assert!(
            attribute(call, "worker").is_some(),
            "the worker that served it"
        );
        assert_eq!(
            attribute(worker, "dspy.signature"),
            Some(&OtelValue::from("Rewrite"))
        );
        // The Python spans keep their own times, within the call's.
        assert!(worker.start_time >= call.start_time && worker.end_time <= call.end_time);
        eprintln!("exported (the call's trace):");
        for span in spans.iter().filter(|s| s.span_context.trace_id() == trace) {
            eprintln!(
                "  {} trace={} span={} parent={} {:?}",
                span.name,
                span.span_context.trace_id(),
                span.span_context.span_id(),
                span.parent_span_id,
                span.end_time
                    .duration_since(span.start_time)
                    .unwrap_or_default()
            );
        }

        // The call's metrics.
        assert_eq!(
            captured.counter("dspy_calls_total{module=dspy.Predict,outcome=ok}"),
            1,
            "{:?}",
            captured.names()
        );
        assert_eq!(
            captured.counter("dspy_lm_tokens_total{direction=input}"),
            10
        );
        assert_eq!(
            captured.counter("dspy_lm_tokens_total{direction=output}"),
            5
        );
        assert_eq!(captured.counter("dspy_lm_requests_total"), 1);
        assert_eq!(
            captured
                .samples("dspy_call_duration_seconds{module=dspy.Predict}")
                .len(),
            1
        );
        assert!(captured.counter("snakepit_requests_total") >= 1);
        dspex.shutdown().await.unwrap();
    });
}
