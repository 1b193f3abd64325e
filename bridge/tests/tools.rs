//! Tools in both directions, values of every kind, sessions and errors, through real Python
//! workers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{run, shared};
use futures_util::StreamExt;
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
                Err::<Value, _>("no, thank you".to_owned())
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
