//! Typed variables with constraints, and watches, through real Python workers.

mod common;

use common::{run, shared};
use futures_util::StreamExt;
use snakepit_grpc_bridge::api::variables::{Constraints, VariableType};
use snakepit_grpc_bridge::{BridgeError, Tensor, Value};

#[test]
fn a_value_that_breaks_a_constraint_is_a_typed_error_and_changes_nothing() {
    run(async {
        let session = shared().await.create_session().await.unwrap();
        let t = session
            .register_variable(
                "temperature",
                VariableType::Float,
                0.7,
                Constraints::default().min(0.0).max(2.0),
            )
            .await
            .unwrap();
        assert_eq!((t.value.clone(), t.version), (Value::Float(0.7), 1));
        let err = session.set_variable("temperature", 3.5).await.unwrap_err();
        match &err {
            BridgeError::ConstraintViolation { message } => {
                assert!(message.contains("above the maximum 2.0"), "{message}")
            }
            other => panic!("expected ConstraintViolation, got {other:?}"),
        }
        let wrong_type = session
            .set_variable("temperature", "hot")
            .await
            .unwrap_err();
        assert!(matches!(
            wrong_type,
            BridgeError::ConstraintViolation { .. }
        ));
        let now = session.get_variable("temperature").await.unwrap();
        assert_eq!((now.value, now.version), (Value::Float(0.7), 1));

        session
            .register_variable(
                "mode",
                VariableType::Choice,
                "fast",
                Constraints::default().choices(["fast", "slow"]),
            )
            .await
            .unwrap();
        assert_constraint_violation(session.set_variable("mode", "medium").await);
        session
            .register_variable(
                "name",
                VariableType::String,
                "ab",
                Constraints::default().length(1, 3),
            )
            .await
            .unwrap();
        assert_constraint_violation(session.set_variable("name", "abcd").await);
        session
            .register_variable(
                "v",
                VariableType::Embedding,
                vec![0.1, 0.2],
                Constraints::default().dimensions(2),
            )
            .await
            .unwrap();
        assert_constraint_violation(session.set_variable("v", vec![0.1]).await);
        let tensor = Tensor::from_f32(vec![2], &[1.0, 2.0]).unwrap();
        session
            .register_variable(
                "w",
                VariableType::Tensor,
                tensor,
                Constraints::default().shape(vec![2]),
            )
            .await
            .unwrap();
        let wrong_shape = Tensor::from_f32(vec![3], &[1.0, 2.0, 3.0]).unwrap();
        assert_constraint_violation(session.set_variable("w", wrong_shape).await);
        session
            .register_variable("n", VariableType::Integer, 1, Constraints::default())
            .await
            .unwrap();
        session
            .register_variable("b", VariableType::Boolean, true, Constraints::default())
            .await
            .unwrap();
        let names: Vec<_> = session
            .list_variables()
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["b", "mode", "n", "name", "temperature", "v", "w"]);
        let duplicate = session
            .register_variable("n", VariableType::Integer, 1, Constraints::default())
            .await
            .unwrap_err();
        assert!(matches!(duplicate, BridgeError::AlreadyExists { .. }));
        let missing = session.get_variable("nope").await.unwrap_err();
        assert!(matches!(missing, BridgeError::NotFound { .. }));
    })
}

#[test]
fn a_watch_sees_every_set_in_order() {
    run(async {
        let session = shared().await.create_session().await.unwrap();
        session
            .register_variable(
                "counter",
                VariableType::Integer,
                0,
                Constraints::default().min(0.0),
            )
            .await
            .unwrap();
        session
            .register_variable("other", VariableType::Integer, 0, Constraints::default())
            .await
            .unwrap();
        let mut watch = session.watch_variables(&["counter"], true).await.unwrap();
        for i in 1..=50 {
            session.set_variable("counter", i).await.unwrap();
            session.set_variable("other", i).await.unwrap();
        }
        assert!(
            matches!(
                session.set_variable("counter", -1).await,
                Err(BridgeError::ConstraintViolation { .. })
            ),
            "a refused set is not seen"
        );
        session.set_variable("counter", 51).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 52 {
            let update = watch.next().await.unwrap().unwrap();
            assert_eq!(update.name, "counter");
            seen.push((update.value.as_i64().unwrap(), update.version));
        }
        let expected: Vec<_> = (0..=51).map(|i| (i, i as u64 + 1)).collect();
        assert_eq!(seen, expected);
        // Ending the session ends the watch.
        session.close().await.unwrap();
        assert!(watch.next().await.is_none());
    })
}

#[test]
fn watching_an_unknown_variable_is_an_error() {
    run(async {
        let session = shared().await.create_session().await.unwrap();
        let mut watch = session.watch_variables(&["ghost"], false).await.unwrap();
        let first = watch.next().await.unwrap();
        assert!(
            matches!(first, Err(BridgeError::NotFound { .. })),
            "{first:?}"
        );
    })
}

/// A set that broke its variable's type or constraints fails with `ConstraintViolation`, as the
/// README promises, not with just any error.
#[track_caller]
fn assert_constraint_violation<T: std::fmt::Debug>(result: Result<T, BridgeError>) {
    assert!(
        matches!(result, Err(BridgeError::ConstraintViolation { .. })),
        "expected ConstraintViolation, got {result:?}"
    );
}
