//! Tools in both directions, values of every kind, sessions and errors, through real Python
//! workers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{run, shared};
use futures_util::StreamExt;
use snakepit_grpc_bridge::api::tools::ToolError;
use snakepit_grpc_bridge::{BridgeError, Map, Tensor, Value, args};

#[test]
fn workers_answer_with_their_identity_and_tools() {
    run(async {
        let bridge = shared().await;
        let me = bridge.ping().await.unwrap();
        assert_eq!(me.run_id, bridge.pool().run_id());
        assert_eq!(me.protocol, "snakepit.bridge.v1");
        assert_eq!(me.package_version, "0.1.0");
        assert!(me.python_version.starts_with("3."), "{}", me.python_version);
        // The worker id is `slot.generation` of a live pool worker, and its pid a live process.
        let (slot, generation) = me.worker_id.split_once('.').expect("slot.generation");
        let worker = &bridge.pool().workers()[slot.parse::<usize>().unwrap()];
        assert_eq!(worker.id.generation, generation.parse::<u64>().unwrap());
        assert!(std::path::Path::new(&format!("/proc/{}", me.pid)).exists());
        let tools = bridge.list_tools().await.unwrap();
        let names: Vec<_> = tools.iter().map(|t| t.name.as_str()).collect();
        for expected in [
            "add",
            "ask_rust",
            "count",
            "echo",
            "snakepit.echo",
            "snakepit.noop",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        let add = tools.iter().find(|t| t.name == "add").unwrap();
        assert_eq!(add.description, "Adds two integers.");
        let params: Vec<_> = add
            .parameters
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.type_name.as_str(),
                    p.required,
                    p.default.clone(),
                )
            })
            .collect();
        assert_eq!(
            params,
            [
                ("a", "int", true, None),
                ("b", "int", false, Some(Value::Int(1)))
            ]
        );
        assert!(tools.iter().find(|t| t.name == "count").unwrap().streaming);
    })
}

#[test]
fn values_of_every_kind_round_trip_exactly() {
    run(async {
        let session = shared().await.create_session().await.unwrap();
        let mut nested = Map::new();
        nested.insert("z".into(), Value::from(vec![Value::Null, Value::from(1.5)]));
        nested.insert("a".into(), Value::from("ä"));
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Float(-0.0),
            Value::Float(f64::INFINITY),
            Value::Float(1e-308),
            Value::from(""),
            Value::from("unicode 𝄞 and a \0 nul"),
            Value::bytes(vec![0u8, 1, 254, 255]),
            Value::from(vec![Value::from(1), Value::from("two"), Value::Null]),
            Value::Map(nested),
            Value::Map(Map::new()),
            Value::Tensor(
                Tensor::from_f32(vec![2, 3], &[1.0, -2.5, 3.0, 0.0, f32::MAX, 6.0]).unwrap(),
            ),
        ];
        for value in values {
            let back = session
                .call_tool("echo", args([("value", value.clone())]))
                .await
                .unwrap();
            assert_eq!(back, value);
        }
        // NaN is not equal to itself; check it by hand.
        let nan = session
            .call_tool("echo", args([("value", f64::NAN)]))
            .await
            .unwrap();
        assert!(nan.as_f64().unwrap().is_nan());
        session.close().await.unwrap();
    })
}

#[test]
fn a_one_megabyte_tensor_round_trips_and_python_computes_on_it() {
    run(async {
        let session = shared().await.create_session().await.unwrap();
        let values: Vec<f64> = (0..131_072).map(|i| f64::from(i) * 0.5).collect();
        let tensor = Tensor::from_f64(vec![256, 512], &values).unwrap();
        assert_eq!(tensor.data().len(), 1 << 20);
        let back = session
            .call_tool("echo", args([("value", tensor.clone())]))
            .await
            .unwrap();
        assert_eq!(back, Value::Tensor(tensor.clone()));
        let sum = session
            .call_tool("tensor_sum", args([("t", tensor)]))
            .await
            .unwrap();
        assert_eq!(sum.as_f64(), Some(values.iter().sum()));
    })
}

#[test]
fn a_streaming_tool_yields_its_chunks_in_order() {
    run(async {
        let session = shared().await.create_session().await.unwrap();
        let chunks: Vec<Value> = session
            .stream_tool("count", args([("n", 200)]))
            .await
            .unwrap()
            .map(|chunk| chunk.unwrap())
            .collect()
            .await;
        assert_eq!(chunks, (0..200).map(Value::from).collect::<Vec<_>>());
        let failing: Vec<_> = session
            .stream_tool("count", args([("n", "many")]))
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(failing.len(), 1);
        assert!(
            matches!(failing[0], Err(BridgeError::InvalidArgument { .. })),
            "{failing:?}"
        );
    })
}

#[test]
fn a_python_tool_calls_back_a_rust_tool_in_its_session() {
    run(async {
        let session = shared().await.create_session().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        session
            .register_rust_tool("triple", "Triples x.", move |arguments| {
                let seen = seen.clone();
                async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let x = arguments["x"].as_i64().ok_or("x must be an integer")?;
                    Ok(Value::from(x * 3))
                }
            })
            .await
            .unwrap();
        session
            .register_rust_tool("refuse", "Always fails.", |_| async {
                Err::<Value, ToolError>("no, thank you".into())
            })
            .await
            .unwrap();
        let answer = session
            .call_tool(
                "ask_rust",
                args([("name", Value::from("triple")), ("x", Value::from(14))]),
            )
            .await
            .unwrap();
        assert_eq!(answer, Value::Int(43));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Many callbacks in flight at once.
        let answers = futures_util::future::join_all((0..20).map(|x| {
            session.call_tool(
                "ask_rust",
                args([("name", Value::from("triple")), ("x", Value::from(x))]),
            )
        }))
        .await;
        for (x, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.unwrap(), Value::Int(x as i64 * 3 + 1));
        }
        let refused = session
            .call_tool(
                "ask_rust",
                args([("name", Value::from("refuse")), ("x", Value::from(1))]),
            )
            .await
            .unwrap_err();
        match &refused {
            BridgeError::CallbackFailed { message } => {
                assert!(message.contains("no, thank you"), "{message}")
            }
            other => panic!("expected CallbackFailed, got {other:?}"),
        }
        assert_eq!(
            session.info().await.unwrap().rust_tools,
            ["refuse", "triple"]
        );

        // Another session does not see this session's Rust tools.
        let other = shared().await.create_session().await.unwrap();
        let err = other
            .call_tool(
                "ask_rust",
                args([("name", Value::from("triple")), ("x", Value::from(1))]),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("no Rust tools registered"),
            "{err}"
        );
    })
}

#[test]
fn a_python_exception_arrives_typed_with_its_traceback() {
    run(async {
        let session = shared().await.create_session().await.unwrap();
        let err = session
            .call_tool("fail", args([("message", "it broke")]))
            .await
            .unwrap_err();
        let python = err.python().expect("a Python exception");
        assert_eq!(python.exception_type, "ValueError");
        assert_eq!(python.message, "it broke");
        assert!(
            python.traceback.contains("raise ValueError(message)"),
            "{}",
            python.traceback
        );
        assert!(
            python.traceback.contains("bridge_test_tools.py"),
            "{}",
            python.traceback
        );
        assert_eq!(err.to_string(), "Python raised ValueError: it broke");

        let unknown = session
            .call_tool("no_such_tool", Map::new())
            .await
            .unwrap_err();
        assert!(
            matches!(unknown, BridgeError::NotFound { .. }),
            "{unknown:?}"
        );
        let bad = session
            .call_tool("add", args([("a", "x")]))
            .await
            .unwrap_err();
        assert!(
            matches!(bad, BridgeError::InvalidArgument { .. }),
            "{bad:?}"
        );
        // The worker is fine afterwards.
        assert_eq!(
            session.call_tool("add", args([("a", 1)])).await.unwrap(),
            Value::Int(2)
        );
    })
}

async fn who(session: &snakepit_grpc_bridge::api::sessions::Session) -> Value {
    session.call_tool("whoami", Map::new()).await.unwrap()
}

#[test]
fn sessions_are_isolated_and_pinned_to_their_worker() {
    run(async {
        let bridge = shared().await;
        let a = bridge.create_session().await.unwrap();
        let b = bridge.create_session().await.unwrap();
        let first = who(&a).await;
        assert_eq!(first.as_map().unwrap()["session"], Value::from(a.id()));
        for _ in 0..5 {
            assert_eq!(who(&a).await, first, "same worker, same session");
        }
        a.register_variable(
            "secret",
            snakepit_grpc_bridge::api::variables::VariableType::Integer,
            7,
            Default::default(),
        )
        .await
        .unwrap();
        let err = b.get_variable("secret").await.unwrap_err();
        assert!(matches!(err, BridgeError::NotFound { .. }), "{err:?}");
        a.close().await.unwrap();
        assert!(bridge.pool().session_worker(a.id()).is_none());
    })
}

/// Counts drops of what it guards (a tool's stream, a caller's input).
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[test]
fn a_rust_tool_streams_to_python_and_stops_when_python_stops_reading() {
    run(async {
        let session = shared().await.create_session().await.unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        let guard = dropped.clone();
        session
            .register_rust_streaming_tool(
                "naturals",
                "1, 2, 3, ... up to n (0: forever)",
                move |a| {
                    let n = a.get("n").and_then(Value::as_i64).unwrap_or(0);
                    let guard = Dropped(guard.clone());
                    futures_util::stream::iter(1..)
                        .take_while(move |i| std::future::ready(n == 0 || *i <= n))
                        .then(move |i| {
                            let _keep = &guard;
                            async move {
                                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                                Ok(Value::Int(i))
                            }
                        })
                },
            )
            .await
            .unwrap();
        let all = session
            .call_tool(
                "read_rust_stream",
                args([("name", Value::from("naturals")), ("n", Value::from(50))]),
            )
            .await
            .unwrap();
        assert_eq!(all, Value::List((1..=50).map(Value::Int).collect()));
        until("the finished stream is dropped", || {
            dropped.load(Ordering::SeqCst) == 1
        })
        .await;
        // ctx.call_rust on a streaming tool gets all its items.
        let listed = session
            .call_tool(
                "call_rust_tool",
                args([("name", Value::from("naturals")), ("n", Value::from(3))]),
            )
            .await
            .unwrap();
        assert_eq!(listed, Value::List((1..=3).map(Value::Int).collect()));
        // An endless stream that Python stops reading after 5 items is dropped in Rust.
        let before = dropped.load(Ordering::SeqCst);
        let five = session
            .call_tool(
                "read_rust_stream",
                args([
                    ("name", Value::from("naturals")),
                    ("n", Value::from(0)),
                    ("stop_after", Value::from(5)),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(five, Value::List((1..=5).map(Value::Int).collect()));
        until("the abandoned stream is dropped", || {
            dropped.load(Ordering::SeqCst) > before
        })
        .await;
    })
}

#[test]
fn rust_tool_errors_reach_python_typed() {
    run(async {
        let session = shared().await.create_session().await.unwrap();
        session
            .register_rust_tool("positive", "Checks n.", |a| async move {
                match a.get("n").and_then(Value::as_i64) {
                    Some(n) if n > 0 => Ok(Value::Int(n)),
                    _ => Err(ToolError::invalid_arguments("n must be positive")),
                }
            })
            .await
            .unwrap();
        session
            .register_rust_tool("broken", "Fails with a cause.", |_| async {
                Err(ToolError::failed(std::io::Error::other(
                    "the index is gone",
                )))
            })
            .await
            .unwrap();
        session
            .register_rust_streaming_tool("two_then_fail", "Fails after two items.", |_| {
                futures_util::stream::iter([
                    Ok(Value::Int(1)),
                    Ok(Value::Int(2)),
                    Err(ToolError::from("ran out")),
                ])
            })
            .await
            .unwrap();
        let call = |name: &'static str, n: i64| {
            let session = &session;
            async move {
                session
                    .call_tool(
                        "call_rust_tool",
                        args([("name", Value::from(name)), ("n", Value::from(n))]),
                    )
                    .await
                    .unwrap()
            }
        };
        assert_eq!(call("positive", 3).await, Value::Int(3));
        assert_eq!(
            call("positive", -1).await,
            Value::from("InvalidArgument: RustToolError: invalid arguments: n must be positive")
        );
        assert_eq!(
            call("broken", 1).await,
            Value::from("RemoteToolError: RustToolError: the index is gone")
        );
        assert_eq!(
            call("two_then_fail", 1).await,
            Value::from("RemoteToolError: RustToolError: ran out")
        );
        // Through a Python tool that does not catch it, the typed error reaches Rust.
        let err = session
            .call_tool(
                "read_rust_stream",
                args([
                    ("name", Value::from("two_then_fail")),
                    ("n", Value::from(1)),
                ]),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, BridgeError::CallbackFailed { .. }), "{err:?}");
    })
}

#[test]
fn a_python_tool_reads_a_stream_from_rust_and_answers_in_a_stream() {
    run(async {
        let session = shared().await.create_session().await.unwrap();
        let lines =
            futures_util::stream::iter((0..100).map(|i| Ok(Value::from(format!("line {i}")))));
        let upper: Vec<Value> = session
            .exchange_tool("upper", args([("prefix", "> ")]), "lines", lines)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(
            upper,
            (0..100)
                .map(|i| Value::from(format!("> LINE {i}")))
                .collect::<Vec<_>>()
        );
        // A tool that returns one value answers with one item.
        let numbers = futures_util::stream::iter((1..=10).map(|i| Ok(Value::Int(i))));
        let sums: Vec<_> = session
            .exchange_tool("total", Map::new(), "numbers", numbers)
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(sums.len(), 1);
        assert_eq!(sums[0].as_ref().unwrap(), &Value::Int(55));
        // An error item is raised in the tool as it reads.
        let failing = futures_util::stream::iter([
            Ok(Value::Int(1)),
            Err(ToolError::from("the source broke")),
        ]);
        let answer: Vec<_> = session
            .exchange_tool("total", Map::new(), "numbers", failing)
            .await
            .unwrap()
            .collect()
            .await;
        assert!(
            matches!(&answer[..], [Err(BridgeError::CallbackFailed { message })] if message.contains("the source broke")),
            "{answer:?}"
        );
        // Passing the stream's parameter as an argument too is refused.
        let twice: Vec<_> = session
            .exchange_tool(
                "upper",
                args([("lines", "x")]),
                "lines",
                futures_util::stream::empty(),
            )
            .await
            .unwrap()
            .collect()
            .await;
        assert!(
            matches!(&twice[..], [Err(BridgeError::InvalidArgument { .. })]),
            "{twice:?}"
        );
    })
}

#[test]
fn dropping_an_exchange_midway_closes_the_tool_and_stops_reading_the_input() {
    run(async {
        let session = shared().await.create_session().await.unwrap();
        let closed = || async {
            match session.call_tool("exchanges", Map::new()).await.unwrap() {
                Value::Map(state) => state["closed"].as_i64().unwrap(),
                other => panic!("{other:?}"),
            }
        };
        let before = closed().await;
        let input_dropped = Arc::new(AtomicUsize::new(0));
        let guard = Dropped(input_dropped.clone());
        // An endless input, one line per millisecond.
        let endless = futures_util::stream::iter(0..).then(move |i| {
            let _keep = &guard;
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                Ok(Value::from(format!("line {i}")))
            }
        });
        let mut out = session
            .exchange_tool("upper", Map::new(), "lines", endless)
            .await
            .unwrap();
        for _ in 0..3 {
            out.next().await.unwrap().unwrap();
        }
        drop(out);
        until("the input stream is dropped", || {
            input_dropped.load(Ordering::SeqCst) == 1
        })
        .await;
        let mut now = closed().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while now == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the tool's generator was closed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            now = closed().await;
        }
        assert_eq!(now, before + 1);
    })
}
