//! `dspex run "question -> answer: str" question="..."`.

use std::process::ExitCode;

use clap::Args;
use dspex::snakepit_grpc_bridge::Map;
use dspex::{Config, Dspex, Value};

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
    let prediction = if args.chain_of_thought {
        dspex.bridge().chain_of_thought(&spec, inputs).await
    } else {
        dspex.bridge().predict(&spec, inputs).await
    };
    let shutdown = dspex.shutdown().await;
    let prediction = prediction.map_err(|e| Failure::new(dspex::error_chain(&e)))?;
    shutdown?;
    if args.json {
        let json = serde_json::Value::from(Value::Map(prediction.outputs));
        println!("{json}");
    } else {
        for (name, value) in &prediction.outputs {
            match value {
                Value::String(text) => println!("{name}: {text}"),
                other => println!("{name}: {}", serde_json::Value::from(other.clone())),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
