#![allow(missing_docs)]
//! Bad input: LM answers that do not fit, inputs at the edges, and requests that name what is not
//! there. Each ends in a clear typed error or an exact round trip; nothing is lost and the worker
//! stays healthy.

mod support;

use dspex::prelude::*;
use dspex::snakepit_grpc_bridge::{Bridge, BridgeError, Map, Value};
use dspex::{Dspex, Error, LmAdapter};
use support::{faulty_lm, run};
use tokio::sync::OnceCell;

#[dspy_type]
pub enum Label {
    Positive,
    Negative,
}

/// Report on the question.
#[dspy_signature]
pub struct Report {
    #[input]
    pub question: String,
    #[output]
    pub answer: String,
    #[output]
    pub count: i64,
    #[output]
    pub score: f64,
    #[output]
    pub label: Label,
    #[output]
    pub tags: Vec<String>,
}

/// A ChatAdapter completion with these sections, in this order.
fn chat(sections: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in sections {
        out.push_str(&format!("[[ ## {name} ## ]]\n{value}\n\n"));
    }
    out.push_str("[[ ## completed ## ]]\n");
    out
}

fn good() -> Vec<(&'static str, &'static str)> {
    vec![
        ("answer", "fine"),
        ("count", "3"),
        ("score", "0.5"),
        ("label", "Positive"),
        ("tags", r#"["a", "b"]"#),
    ]
}

fn with(field: &str, value: &'static str) -> String {
    let sections: Vec<_> = good()
        .into_iter()
        .map(|(k, v)| (k, if k == field { value } else { v }))
        .collect();
    chat(&sections)
}

/// The raw completions the LM gives, by the marker in the question.
fn raw_answers() -> Map {
    let mut extra = good();
    extra.push(("mood", "cheerful"));
    let cases: Vec<(&str, String)> = vec![
        ("<good>", chat(&good())),
        ("<wrong-type>", with("count", "many")),
        ("<missing>", chat(&[("answer", "fine"), ("count", "3")])),
        ("<extra>", chat(&extra)),
        ("<empty>", String::new()),
        ("<garbage>", "<MB-OF-GARBAGE>".to_owned()),
        ("<non-utf8>", with("answer", "caf<INVALID-UTF8>")),
        ("<literal>", with("label", "Maybe")),
        ("<nan>", with("score", "NaN")),
        ("<infinity>", with("score", "inf")),
        (
            "<nested-non-utf8>",
            with("tags", r#"["ok", "<INVALID-UTF8>"]"#),
        ),
        (
            "<bad-json>",
            r#"{"answer": "fine", "count": 3, "score": "#.to_owned(),
        ),
    ];
    cases
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::from(v)))
        .collect()
}

static DSPEX: OnceCell<Dspex> = OnceCell::const_new();

async fn dspex() -> &'static Dspex {
    DSPEX
        .get_or_init(|| async {
            support::builder()
                .lm(faulty_lm(raw_answers(), &[]))
                .workers(2)
                .start()
                .await
                .expect("dspex starts")
        })
        .await
}

async fn bridge() -> &'static Bridge {
    dspex().await.bridge()
}

async fn report(marker: &str) -> Result<ReportOutput, Error> {
    Report::predict(
        dspex().await,
        ReportInput {
            question: marker.to_owned(),
        },
    )
    .await
}

/// The parse error of `result`, checked to name `field` (when given) and carry the raw answer.
fn parse_error(marker: &str, result: Result<ReportOutput, Error>, field: Option<&str>) -> String {
    match result {
        Err(Error::Bridge(BridgeError::ParseFailed {
            field: got,
            raw_output,
            message,
        })) => {
            if let Some(field) = field {
                assert_eq!(got, field, "{marker}: {message}");
            }
            raw_output
        }
        other => panic!("{marker}: expected a parse error, got {other:?}"),
    }
}

#[test]
fn lm_answers_that_do_not_fit_are_typed_parse_errors_and_the_workers_stay_healthy() {
    run(async {
        let ok = report("<good>").await.unwrap();
        assert_eq!((ok.count, ok.label, ok.tags.len()), (3, Label::Positive, 2));
        // Extra fields are not an error: every declared field is there and parses.
        let extra = report("<extra>").await.unwrap();
        assert_eq!(extra.answer, "fine");

        parse_error("<wrong-type>", report("<wrong-type>").await, Some("count"));
        parse_error("<missing>", report("<missing>").await, Some("score"));
        parse_error("<empty>", report("<empty>").await, Some("answer"));
        let raw = parse_error("<garbage>", report("<garbage>").await, Some("answer"));
        assert_eq!(raw.len(), 1 << 20, "the whole raw answer comes back");
        let raw = parse_error("<non-utf8>", report("<non-utf8>").await, Some("answer"));
        assert!(
            raw.contains("caf\\udcff\\udcfe"),
            "undecodable bytes are shown escaped: {raw}"
        );
        parse_error("<nested>", report("<nested-non-utf8>").await, Some("tags"));
        parse_error("<literal>", report("<literal>").await, Some("label"));
        parse_error("<nan>", report("<nan>").await, Some("score"));
        parse_error("<infinity>", report("<infinity>").await, Some("score"));

        // JSONAdapter, answer that is not JSON.
        let json = Predict::<Report>::with_lm(
            dspex().await,
            faulty_lm(raw_answers(), &[]).adapter(LmAdapter::Json),
        );
        let error = json
            .call(ReportInput {
                question: "<bad-json>".into(),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::Bridge(BridgeError::ParseFailed { .. })),
            "{error:?}"
        );

        // Nothing crashed, nothing restarted, and the next calls are served.
        let stats = bridge().await.pool().stats();
        assert_eq!((stats.restarts, stats.workers_ready), (0, 2), "{stats:?}");
        for _ in 0..4 {
            assert_eq!(report("<good>").await.unwrap().count, 3);
        }
    });
}

async fn echo(value: Value) -> Value {
    let mut arguments = Map::new();
    arguments.insert("value".to_owned(), value);
    bridge()
        .await
        .call_tool("snakepit.echo", arguments)
        .await
        .expect("the echo succeeds")
}

fn nested(depth: usize) -> Value {
    let mut value = Value::from("bottom");
    for level in 0..depth {
        let mut map = Map::new();
        map.insert(format!("level{level}"), value);
        value = Value::List(vec![Value::Map(map)]);
    }
    value
}

#[test]
fn edge_values_round_trip_exactly() {
    run(async {
        let every_plane: String = [
            'a',
            '\u{e9}',
            '\u{4e2d}',
            '\u{1f600}',
            '\u{20000}',
            '\u{30000}',
            '\u{e0001}',
            '\u{f0000}',
            '\u{10fffd}',
            '\u{ffff}',
            '\u{fffd}',
        ]
        .into_iter()
        .collect();
        let cases = vec![
            ("empty string", Value::from("")),
            ("NUL bytes", Value::from("a\0b\0\0c")),
            ("unicode of every plane", Value::from(every_plane)),
            ("10 MB string", Value::from("x".repeat(10 << 20))),
            ("depth 64", nested(64)),
            (
                "100,000 items",
                Value::List((0..100_000).map(Value::from).collect()),
            ),
            (
                "i64 extremes",
                Value::List(vec![Value::Int(i64::MIN), Value::Int(i64::MAX)]),
            ),
        ];
        for (name, value) in cases {
            assert!(
                echo(value.clone()).await == value,
                "{name} did not round-trip"
            );
        }
    });
}

#[test]
fn inputs_at_the_edges_reach_dspy_intact() {
    run(async {
        let predict = Predict::<Report>::new(dspex().await);
        let every_plane = "\u{e9}\u{4e2d}\u{1f600}\u{20000}\u{30000}\u{e0001}\u{10fffd}";
        let edges = [
            ("empty", String::new()),
            ("NUL bytes", "a\0b\0".to_owned()),
            ("every plane", every_plane.to_owned()),
            ("10 MB", "y".repeat(10 << 20)),
        ];
        for (name, edge) in edges {
            // The LM answers any prompt that contains the marker.
            let input = ReportInput {
                question: format!("<good>{edge}</good>"),
            };
            let prediction = predict
                .predictor()
                .run(
                    dspex::SignatureInput::to_inputs(&input),
                    &dspex::CallOptions::default().with_history(),
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let prompt = format!("{:?}", prediction.history[0].messages);
            let sent = format!("{:?}", format!("<good>{edge}</good>"));
            let sent = &sent[1..sent.len() - 1];
            assert!(
                prompt.contains(sent),
                "{name}: the prompt holds the exact input"
            );
            assert_eq!(prediction.get("count"), Some(&Value::Int(3)), "{name}");
        }
    });
}

#[test]
fn requests_for_what_is_not_there_are_typed_errors() {
    run(async {
        let bridge = bridge().await;
        let session = bridge.create_session().await.unwrap();
        // Unknown class path, unknown module in it.
        for class in ["dspy.NoSuchModule", "no_such_package.Thing", "not a path"] {
            let error = session
                .create_instance(class, None, vec![], Map::new(), None)
                .await
                .unwrap_err();
            assert!(
                matches!(
                    error,
                    BridgeError::NotFound { .. } | BridgeError::InvalidArgument { .. }
                ),
                "{class}: {error:?}"
            );
        }
        // Unknown method; then a deleted instance.
        let spec = <Report as dspex::Signature>::spec();
        let instance = session
            .create_instance("dspy.Predict", Some(spec), vec![], Map::new(), None)
            .await
            .unwrap();
        let error = instance
            .call_method("no_such_method", vec![], Map::new())
            .await
            .unwrap_err();
        assert!(matches!(error, BridgeError::NotFound { .. }), "{error:?}");
        // Wrong arguments: `forward` takes keywords only; a list where a str input belongs.
        let error = instance
            .call_method("forward", vec![Value::Int(5)], Map::new())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                BridgeError::InvalidArgument { .. } | BridgeError::Python(_)
            ),
            "{error:?}"
        );
        let mut wrong = Map::new();
        wrong.insert("question".into(), Value::List(vec![Value::Int(1)]));
        let error = instance.call(wrong).await.unwrap_err();
        assert!(
            matches!(&error, BridgeError::InvalidArgument { message } if message.contains("'question'")),
            "{error:?}"
        );
        let again = session.object(instance.object_ref().clone());
        instance.delete().await.unwrap();
        let error = again.call(Map::new()).await.unwrap_err();
        assert!(matches!(error, BridgeError::NotFound { .. }), "{error:?}");
        // Unknown session: closed, so its worker forgot it.
        session.close().await.unwrap();
        let error = session
            .call_tool("snakepit.echo", Map::new())
            .await
            .unwrap_err();
        assert!(
            matches!(error, BridgeError::SessionNotFound { .. }),
            "{error:?}"
        );
        let stats = bridge.pool().stats();
        assert_eq!((stats.restarts, stats.workers_ready), (0, 2));
    });
}

#[test]
fn hostile_bytes_on_the_worker_sockets_do_not_hurt_the_workers() {
    use std::io::Write as _;
    run(async {
        let bridge = bridge().await;
        let dir = bridge.pool().adapter().socket_dir().to_owned();
        let sockets: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with('w') && (name.ends_with(".sock") || name.ends_with(".fast"))
            })
            .collect();
        assert!(
            sockets.len() >= 4,
            "gRPC and fast-path sockets of both workers: {sockets:?}"
        );
        let workers_before = worker_processes(bridge);
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..200 {
            let path = &sockets[round % sockets.len()];
            let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
            let mut noise = vec![0u8; rng.usize(0..2048)];
            rng.fill(&mut noise);
            if round % 3 == 0 {
                // An HTTP/2 preface followed by noise gets further into the gRPC server.
                noise.splice(0..0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".iter().copied());
            }
            let _ = stream.write_all(&noise);
        }
        for _ in 0..4 {
            bridge.ping().await.unwrap();
            assert_eq!(report("<good>").await.unwrap().count, 3);
        }
        // Checked after the calls above, so a worker the noise killed has had time to be seen:
        // the same processes, never restarted.
        let stats = bridge.pool().stats();
        assert_eq!((stats.restarts, stats.workers_ready), (0, 2), "{stats:?}");
        assert_eq!(worker_processes(bridge), workers_before);
    });
}

/// Each slot's process and generation.
fn worker_processes(bridge: &Bridge) -> Vec<(Option<u32>, u64)> {
    bridge
        .pool()
        .workers()
        .iter()
        .map(|w| (w.pid, w.id.generation))
        .collect()
}
