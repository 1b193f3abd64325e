//! Signatures cross to a worker once and are named by their hash afterwards: a fresh worker, two
//! specs that differ only in a description, and more signatures than a worker keeps.

mod common;

use std::time::Duration;

use common::{builder, eventually, run};
use snakepit_grpc_bridge::api::dspy::{CallOptions, FieldSpec, FieldType, Lm, SignatureSpec};
use snakepit_grpc_bridge::{Bridge, Map, Value, args};

fn qa(name: &str, question_description: &str) -> SignatureSpec {
    SignatureSpec::new(name)
        .input_field(
            FieldSpec::new("question", FieldType::String).description(question_description),
        )
        .output("answer", FieldType::String)
}

async fn one_worker(env: &[(&str, &str)]) -> Bridge {
    let answers: Map = [("q".to_owned(), Value::Map(args([("answer", "a")])))]
        .into_iter()
        .collect();
    env.iter()
        .fold(builder().workers(1), |b, (k, v)| b.env(*k, *v))
        .lm(Lm::dummy(Value::Map(answers)))
        .start()
        .await
        .unwrap()
}

async fn ask(bridge: &Bridge, signature: &SignatureSpec) -> String {
    let prediction = bridge
        .predict(signature, args([("question", "q")]))
        .await
        .unwrap();
    prediction.outputs["answer"].as_str().unwrap().to_owned()
}

#[test]
fn a_replaced_worker_gets_the_definition_without_the_caller_noticing() {
    run(async {
        let bridge = one_worker(&[]).await;
        let signature = qa("QA", "The question.");
        assert_eq!(ask(&bridge, &signature).await, "a");
        let before = bridge.ping().await.unwrap();
        assert_eq!(before.definitions, 1, "the worker holds the signature");
        std::process::Command::new("kill")
            .args(["-9", &before.pid.to_string()])
            .status()
            .unwrap();
        assert!(
            eventually(Duration::from_secs(30), || bridge.pool().stats().restarts
                == 1)
            .await,
            "the worker was replaced"
        );
        bridge.pool().await_ready().await.unwrap();
        let fresh = bridge.ping().await.unwrap();
        assert_ne!(fresh.pid, before.pid);
        assert_eq!(fresh.definitions, 0, "a new worker holds nothing");
        // The same spec, by hash: the new worker asks for the definition, the call goes through.
        assert_eq!(ask(&bridge, &signature).await, "a");
        assert_eq!(bridge.ping().await.unwrap().definitions, 1);
        bridge.shutdown().await.unwrap();
    })
}

#[test]
fn specs_that_differ_only_in_a_description_are_two_definitions() {
    run(async {
        let bridge = one_worker(&[]).await;
        let first = qa("QA", "Asked by a child.");
        let second = qa("QA", "Asked by an expert.");
        assert_ne!(first.hash_hex(), second.hash_hex());
        assert_eq!(first.hash_hex(), qa("QA", "Asked by a child.").hash_hex());
        for (signature, description) in [
            (&first, "Asked by a child."),
            (&second, "Asked by an expert."),
        ] {
            let prediction = bridge
                .run_module(
                    "dspy.Predict",
                    signature,
                    Map::new(),
                    args([("question", "q")]),
                    &CallOptions::default().with_history(),
                )
                .await
                .unwrap();
            let prompt = format!("{:?}", prediction.history[0].messages);
            assert!(
                prompt.contains(description),
                "its own description reached the LM"
            );
        }
        assert_eq!(bridge.ping().await.unwrap().definitions, 2);
        bridge.shutdown().await.unwrap();
    })
}

#[test]
fn a_thousand_signatures_stay_within_the_workers_bound() {
    run(async {
        let bridge = one_worker(&[
            ("SNAKEPIT_DEFINITIONS", "100"),
            ("SNAKEPIT_MODULE_CACHE", "100"),
        ])
        .await;
        let signatures: Vec<_> = (0..1000)
            .map(|i| qa(&format!("QA{i}"), &format!("Question number {i}.")))
            .collect();
        for signature in &signatures {
            assert_eq!(ask(&bridge, signature).await, "a");
        }
        let held = bridge.ping().await.unwrap().definitions;
        assert_eq!(held, 100, "the worker keeps only the 100 most recent");
        // The first one was evicted long ago: it is sent again, and works.
        assert_eq!(ask(&bridge, &signatures[0]).await, "a");
        assert_eq!(bridge.ping().await.unwrap().definitions, 100);
        assert_eq!(bridge.pool().stats().restarts, 0);
        bridge.shutdown().await.unwrap();
    })
}

#[test]
fn every_worker_learns_a_signature_on_its_first_call() {
    run(async {
        let answers: Map = [("q".to_owned(), Value::Map(args([("answer", "a")])))]
            .into_iter()
            .collect();
        let bridge = builder()
            .workers(2)
            .lm(Lm::dummy(Value::Map(answers)))
            .start()
            .await
            .unwrap();
        let signature = qa("QA", "The question.");
        for _ in 0..20 {
            assert_eq!(ask(&bridge, &signature).await, "a");
        }
        // Sequential calls alternate between the workers; each got the definition (on the worker
        // that asked for it) and holds it.
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..50 {
            let identity = bridge.ping().await.unwrap();
            seen.insert(identity.pid, identity.definitions);
            if seen.len() == 2 {
                break;
            }
        }
        assert_eq!(seen.len(), 2, "both workers answered");
        assert!(seen.values().all(|&held| held == 1), "{seen:?}");
        bridge.shutdown().await.unwrap();
    })
}
