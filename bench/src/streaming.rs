//! The streaming group: for an LM that writes slowly (4 characters per 50 ms), the time to the
//! first streamed piece of a typed answer beside the time to the whole answer.

use std::time::Instant;

use dspex::prelude::*;
use dspex::{Streamed, Value};
use futures_util::StreamExt;

use crate::{Overhead, OverheadInput, Summary, bench_python_dir, median_and_spread};

const RUNS: usize = 7;
const ANSWER: &str =
    "Light scatters off the molecules of the air, and blue light scatters the most.";

/// Median time to the first piece and to the whole answer, in ms.
pub(crate) async fn streaming(summary: &mut Summary) {
    let mut answers = dspex::__private::Map::new();
    for i in 0..=RUNS {
        let mut fields = dspex::__private::Map::new();
        fields.insert("answer".into(), Value::from(ANSWER));
        fields.insert("confidence".into(), Value::from("0.9"));
        answers.insert(format!("<s{i}>"), Value::Map(fields));
    }
    let mut kwargs = dspex::__private::Map::new();
    kwargs.insert("answers".into(), Value::Map(answers));
    kwargs.insert("delay_ms".into(), Value::Float(50.0));
    let dspex = Dspex::builder()
        .lm(Lm::custom("dspex_stream_lm.StreamLM", kwargs))
        .workers(1)
        .python_path(bench_python_dir())
        .python_path(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../dspex/examples/python"
        ))
        .start()
        .await
        .expect("dspex starts");
    let predict = Predict::<Overhead>::new(&dspex);
    let (mut first, mut whole) = (Vec::new(), Vec::new());
    for i in 0..=RUNS {
        let started = Instant::now();
        let mut stream = predict
            .stream(OverheadInput {
                question: format!("<s{i}>"),
                context: "the sky".into(),
            })
            .await
            .expect("a stream");
        let mut first_piece = None;
        while let Some(item) = stream.next().await {
            match item.expect("a streamed item") {
                Streamed::Chunk(_) => {
                    first_piece.get_or_insert(started.elapsed());
                }
                Streamed::Output(out) => assert_eq!(out.answer, ANSWER),
                _ => {}
            }
        }
        // The first run warms the worker up.
        if i > 0 {
            first.push(first_piece.expect("pieces").as_secs_f64() * 1e3);
            whole.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    dspex.shutdown().await.expect("shutdown");
    summary.set("streaming.first_piece_ms", median_and_spread(&mut first).0);
    summary.set("streaming.whole_answer_ms", median_and_spread(&mut whole).0);
}
