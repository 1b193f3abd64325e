//! `dspex run "question -> answer: str" question="..."`.

use std::process::ExitCode;

use clap::Args;
use std::io::Write;

use dspex::snakepit_grpc_bridge::Map;
use dspex::snakepit_grpc_bridge::api::dspy::{CallOptions, Prediction, SignatureSpec, StreamItem};
use dspex::{Config, Dspex, Value};
use futures_util::StreamExt;

use crate::Failure;
use crate::signature;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The signature, in DSPy's string syntax: `"context: list[str], question -> answer: str"`.
    signature: String,
    /// The inputs, `name=value` (read by the field's type; lists and maps as JSON).
    inputs: Vec<String>,
    /// The signature's instructions.
    #[arg(long)]
    instructions: Option<String>,
    /// Reason first (`dspy.ChainOfThought`) and print the reasoning.
    #[arg(long)]
    chain_of_thought: bool,
    /// Print the outputs as one JSON object.
    #[arg(long)]
    json: bool,
    /// Print each output as the LM writes it (DSPy's streaming).
    #[arg(long, conflicts_with = "json")]
    stream: bool,
}

pub(crate) async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let spec =
        signature::parse(&args.signature, args.instructions.as_deref()).map_err(Failure::usage)?;
    let mut inputs = Map::new();
    for pair in &args.inputs {
        let (name, text) = pair
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("`{pair}` is not `name=value`")))?;
        let field = spec.inputs.iter().find(|f| f.name == name).ok_or_else(|| {
            let names: Vec<&str> = spec.inputs.iter().map(|f| f.name.as_str()).collect();
            Failure::usage(format!(
                "`{name}` is not an input of the signature (its inputs: {})",
                names.join(", ")
            ))
        })?;
        let value = signature::value(&field.field_type, text)
            .map_err(|e| Failure::usage(format!("input `{name}`: {e}")))?;
        inputs.insert(name.to_owned(), value);
    }
    if let Some(missing) = spec.inputs.iter().find(|f| !inputs.contains_key(&f.name)) {
        return Err(Failure::usage(format!(
            "no value for the input `{0}` (give `{0}=...`)",
            missing.name
        )));
    }
    let config = Config::load()?;
    if config.lm().is_none() {
        return Err(Failure::new(
            "no LM: set DSPEX_LM to a model (e.g. openai/gpt-4o-mini, with its key variable such as OPENAI_API_KEY), or [lm] model in dspex.toml",
        ));
    }
    let dspex = config.apply(Dspex::builder()).workers(1).start().await?;
    let class = if args.chain_of_thought {
        "dspy.ChainOfThought"
    } else {
        "dspy.Predict"
    };
    let mut printed = Vec::new();
    let prediction = if args.stream {
        stream(&dspex, class, &spec, inputs, &mut printed).await
    } else {
        let options = CallOptions::default();
        let bridge = dspex.bridge();
        bridge
            .run_module(class, &spec, Map::new(), inputs, &options)
            .await
    };
    let shutdown = dspex.shutdown().await;
    let prediction = prediction.map_err(|e| Failure::new(dspex::error_chain(&e)))?;
    shutdown?;
    let mut outputs = prediction.outputs;
    outputs.retain(|name, _| !printed.contains(name));
    if args.json {
        let json = serde_json::Value::from(Value::Map(outputs));
        println!("{json}");
    } else {
        for (name, value) in &outputs {
            match value {
                Value::String(text) => println!("{name}: {text}"),
                other => println!("{name}: {}", serde_json::Value::from(other.clone())),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the module streamed, printing each field's pieces under its name as they come; returns
/// the prediction and, in `printed`, the fields already printed whole.
async fn stream(
    dspex: &Dspex,
    class: &str,
    spec: &SignatureSpec,
    inputs: Map,
    printed: &mut Vec<String>,
) -> dspex::snakepit_grpc_bridge::Result<Prediction> {
    let options = CallOptions::default();
    let mut items = dspex
        .bridge()
        .stream_module(class, spec, None, Map::new(), inputs, &options)
        .await?;
    let mut out = std::io::stdout();
    let mut current: Option<String> = None;
    let end_line = |current: &Option<String>| {
        if current.is_some() {
            println!();
        }
    };
    while let Some(item) = items.next().await {
        match item {
            // DSPy marks a field's end with an empty last piece.
            Ok(StreamItem::Chunk(chunk)) if chunk.text.is_empty() => {}
            Ok(StreamItem::Chunk(chunk)) => {
                if current.as_deref() != Some(chunk.field.as_str()) {
                    end_line(&current);
                    print!("{}: ", chunk.field);
                    printed.push(chunk.field.clone());
                    current = Some(chunk.field);
                }
                print!("{}", chunk.text);
                let _ = out.flush();
            }
            Ok(StreamItem::Done(prediction)) => {
                end_line(&current);
                return Ok(prediction);
            }
            Ok(_) => {}
            Err(e) => {
                end_line(&current);
                return Err(e);
            }
        }
    }
    Err(dspex::BridgeError::Protocol(
        "the stream ended without a result".into(),
    ))
}
