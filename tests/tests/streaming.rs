#![allow(missing_docs)]
//! Streamed typed calls on real workers with an LM that writes its answer slowly
//! (`dspex_stream_lm.StreamLM`): pieces arrive long before the end and add up to the typed output;
//! a stream dropped midway stops the LM in the worker and frees the slot at once; a deadline ends
//! a stream.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use dspex::prelude::*;
use dspex::{CallOptions, Dspex, Error, Streamed, Value};
use futures_util::StreamExt;
use support::{QA, QAInput, eventually, run};
use tokio::sync::OnceCell;

const ANSWER: &str = "Rayleigh scattering makes short wavelengths spread across the sky";

static DSPEX: OnceCell<Dspex> = OnceCell::const_new();
/// One test at a time on the shared pool: the slot counts below are exact.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn events_file() -> &'static Path {
    static FILE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = FILE.get_or_init(|| tempfile::tempdir().unwrap());
    Box::leak(dir.path().join("events").into_boxed_path())
}

async fn dspex() -> &'static Dspex {
    DSPEX
        .get_or_init(|| async {
            let answer = |reasoning: bool, text: &str| {
                let mut fields = dspex::__private::Map::new();
                if reasoning {
                    fields.insert("reasoning".into(), Value::from("Because of physics."));
                }
                fields.insert("answer".into(), Value::from(text));
                Value::Map(fields)
            };
            let mut answers = dspex::__private::Map::new();
            for q in ["<s1>", "<s3>"] {
                answers.insert(q.into(), answer(false, ANSWER));
            }
            answers.insert("<s2>".into(), answer(true, ANSWER));
            // 1,000 characters: 250 pieces, 12 s at 50 ms.
            answers.insert("<long>".into(), answer(false, &"x".repeat(1000)));
            let mut kwargs = dspex::__private::Map::new();
            kwargs.insert("answers".into(), Value::Map(answers));
            kwargs.insert("delay_ms".into(), Value::Float(50.0));
            kwargs.insert(
                "events_file".into(),
                Value::from(events_file().to_str().unwrap()),
            );
            support::example_lm_builder(Lm::custom("dspex_stream_lm.StreamLM", kwargs), 1)
                .bridge(|b| b.pool(|p| p.max_in_flight_per_worker(8)))
                .start()
                .await
                .expect("dspex starts")
        })
        .await
}

fn ask(question: &str) -> QAInput {
    QAInput {
        question: question.into(),
    }
}

fn lines(prefix: &str) -> usize {
    std::fs::read_to_string(events_file())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

#[test]
fn pieces_arrive_as_written_and_add_up_to_the_typed_output() {
    run(async {
        let _serial = SERIAL.lock().await;
        let qa = Predict::<QA>::new(dspex().await);
        // Warm: the worker imports and builds what the stream needs.
        let mut warm = qa.stream(ask("<s3>")).await.unwrap();
        while warm.next().await.is_some() {}

        let started = Instant::now();
        let mut stream = qa.stream(ask("<s1>")).await.unwrap();
        let (mut first_chunk, mut text, mut chunks, mut output) = (None, String::new(), 0, None);
        while let Some(item) = stream.next().await {
            match item.unwrap() {
                Streamed::Chunk(chunk) => {
                    first_chunk.get_or_insert(started.elapsed());
                    assert_eq!(chunk.field, "answer");
                    text.push_str(&chunk.text);
                    chunks += 1;
                }
                Streamed::Output(out) => output = Some((out, started.elapsed())),
                _ => {}
            }
        }
        let (output, whole) = output.expect("the typed output, last");
        let first_chunk = first_chunk.expect("pieces");
        assert_eq!(output.answer, ANSWER);
        assert_eq!(text, ANSWER, "the pieces add up to the answer");
        assert!(chunks >= 10, "{chunks} pieces");
        assert!(
            first_chunk * 2 < whole,
            "the first piece ({first_chunk:?}) long before the whole answer ({whole:?})"
        );
        eprintln!(
            "slow LM (4 characters per 50 ms): first piece after {:.0} ms, whole answer after {:.0} ms ({chunks} pieces)",
            first_chunk.as_secs_f64() * 1e3,
            whole.as_secs_f64() * 1e3
        );
    });
}

#[test]
fn chain_of_thought_streams_its_reasoning_then_its_answer() {
    run(async {
        let _serial = SERIAL.lock().await;
        let cot = ChainOfThought::<QA>::new(dspex().await);
        let mut stream = cot.stream(ask("<s2>")).await.unwrap();
        let mut fields = Vec::new();
        let mut output = None;
        while let Some(item) = stream.next().await {
            match item.unwrap() {
                Streamed::Chunk(chunk) if fields.last() != Some(&chunk.field) => {
                    fields.push(chunk.field);
                }
                Streamed::Output(out) => output = Some(out),
                _ => {}
            }
        }
        assert_eq!(fields, ["reasoning", "answer"]);
        let output = output.unwrap();
        assert_eq!(output.reasoning, "Because of physics.");
        assert_eq!(output.output.answer, ANSWER);
    });
}

#[test]
fn a_stream_dropped_midway_stops_the_lm_and_frees_its_slot() {
    run(async {
        let _serial = SERIAL.lock().await;
        let dspex = dspex().await;
        let qa = Predict::<QA>::new(dspex);
        let before = lines("cancelled");
        let mut stream = qa.stream(ask("<long>")).await.unwrap();
        loop {
            match stream.next().await.unwrap().unwrap() {
                Streamed::Chunk(_) => break,
                _ => continue,
            }
        }
        assert_eq!(dspex.bridge().pool().stats().in_flight, 1);
        drop(stream);
        assert_eq!(
            dspex.bridge().pool().stats().in_flight,
            0,
            "the slot is free at once"
        );
        assert!(
            eventually(Duration::from_secs(10), || lines("cancelled") > before).await,
            "the worker cancelled the LM's stream"
        );
        // The LM's generator ended with its "cancelled" line: it makes no piece after it.
        let produced = lines("chunk");
        assert!(
            produced < 250,
            "the LM stopped early: {produced} pieces of 250"
        );
    });
}

#[test]
fn a_deadline_ends_a_stream() {
    run(async {
        let _serial = SERIAL.lock().await;
        let qa = Predict::<QA>::new(dspex().await);
        let before = lines("cancelled");
        let options = CallOptions::default().timeout(Duration::from_millis(800));
        let mut stream = qa.stream_with(ask("<long>"), &options).await.unwrap();
        let mut pieces = 0;
        let error = loop {
            match stream.next().await.expect("an error ends the stream") {
                Ok(Streamed::Chunk(_)) => pieces += 1,
                Ok(other) => panic!("no output before the deadline: {other:?}"),
                Err(e) => break e,
            }
        };
        assert!(pieces > 0, "pieces came before the deadline");
        assert!(
            matches!(
                error,
                Error::Bridge(dspex::BridgeError::DeadlineExceeded { .. })
            ),
            "{error:?}"
        );
        assert!(stream.next().await.is_none(), "nothing after the error");
        drop(stream);
        assert!(
            eventually(Duration::from_secs(10), || lines("cancelled") > before).await,
            "the worker cancelled the LM's stream"
        );
    });
}
