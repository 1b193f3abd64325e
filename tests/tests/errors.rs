#![allow(missing_docs)]
//! Errors print each cause once: a message never repeats what its `source()` says, so printing
//! the chain (`dspex::error_chain`) shows every cause exactly once.

use std::sync::Arc;

use dspex::snakepit_grpc_bridge::environment::EnvironmentError;
use dspex::snakepit_grpc_bridge::snakepit::{PoolError, StartFailure, WorkerId};
use dspex::snakepit_grpc_bridge::{BridgeError, PythonError};
use dspex::{DecodeError, Error, error_chain};

fn io(text: &str) -> std::io::Error {
    std::io::Error::other(text.to_owned())
}

/// Every error in the chain of `error`, with the check that none repeats its source's message.
fn assert_each_cause_once(error: &(dyn std::error::Error + 'static)) {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(source) = error.source() {
            let (message, cause) = (error.to_string(), source.to_string());
            assert!(
                !message.contains(&cause),
                "{message:?} repeats its source {cause:?}"
            );
        }
        current = error.source();
    }
    let chain = error_chain(error);
    assert!(chain.starts_with(&error.to_string()), "{chain}");
}

#[test]
fn each_error_prints_its_cause_once_and_the_chain_has_them_all() {
    let worker = WorkerId {
        slot: 1,
        generation: 0,
    };
    let status = Box::new(tonic::Status::unavailable("connection reset"));
    let errors: Vec<Box<dyn std::error::Error + 'static>> = vec![
        Box::new(Error::Decode {
            signature: "QA".into(),
            source: DecodeError::new("an integer", "string \"x\"").in_field("n"),
        }),
        Box::new(dspex::data::DataError::Read {
            path: "data.jsonl".into(),
            source: io("disk gone"),
        }),
        Box::new(EnvironmentError::PythonNotFound {
            program: "/usr/bin/python3".into(),
            source: io("no such file"),
        }),
        Box::new(BridgeError::Transport { worker, status }),
        Box::new(BridgeError::Python(PythonError {
            exception_type: "ValueError".into(),
            message: "bad".into(),
            traceback: String::new(),
        })),
        Box::new(PoolError::StartupFailed {
            worker,
            exit: dspex::snakepit_grpc_bridge::snakepit::WorkerExit::StartFailed {
                reason: StartFailure::Spawn {
                    program: "python3".into(),
                    source: Arc::new(io("permission denied")),
                },
                stderr_tail: String::new(),
            },
        }),
    ];
    for error in &errors {
        assert_each_cause_once(error.as_ref());
    }
    // The chain has every cause: the decode error's path, the I/O error, gRPC's status.
    let chains: Vec<String> = errors.iter().map(|e| error_chain(e.as_ref())).collect();
    assert!(
        chains[0].contains("n: expected an integer"),
        "{}",
        chains[0]
    );
    assert!(
        chains[1].ends_with("cannot read data.jsonl: disk gone"),
        "{}",
        chains[1]
    );
    assert!(chains[2].contains("no such file"), "{}", chains[2]);
    assert!(chains[3].contains("connection reset"), "{}", chains[3]);
    // A Python exception is an error of its own.
    let python: &dyn std::error::Error = &PythonError {
        exception_type: "KeyError".into(),
        message: "'x'".into(),
        traceback: String::new(),
    };
    assert_eq!(python.to_string(), "KeyError: 'x'");
    assert!(python.source().is_none());
}
