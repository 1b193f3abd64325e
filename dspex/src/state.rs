//! A predictor's tuned state in DSPy's own JSON format, and program files made of them.
//!
//! DSPy saves a program (`program.save("x.json")`) as one object: for each predictor, by its
//! DSPy name (`rewrite`, `answer.predict` for a ChainOfThought field named `answer`), its demos
//! and its signature's instructions and field prefixes and descriptions; plus `metadata`. A
//! program that is one `Predict` is saved as that predictor's state itself. The Python side of
//! applying a state is `python/snakepit_bridge/state.py`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map as JsonMap, Value as Json};
use snakepit_grpc_bridge::api::dspy::SignatureSpec;

use crate::predictor::PredictorKind;

/// One demo: field name → value, as DSPy keeps it (`augmented: true` marks a bootstrapped one).
pub type Demo = JsonMap<String, Json>;

/// The prefix and description of one signature field, as tuned (COPRO and MIPROv2 rewrite them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldState {
    /// The prefix shown before the field (`Answer:`).
    pub prefix: String,
    /// The description shown for the field.
    pub description: String,
}

/// What an optimiser tunes in one predictor: its instructions, its fields' prefixes and
/// descriptions (in DSPy's order: inputs, then `reasoning` for a ChainOfThought, then outputs),
/// and its demos.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictorState {
    /// The signature's instructions.
    pub instructions: String,
    /// Each field's prefix and description.
    pub fields: Vec<FieldState>,
    /// The few-shot examples shown before the input.
    pub demos: Vec<Demo>,
}

#[derive(Serialize, Deserialize)]
struct SignatureWire {
    instructions: String,
    fields: Vec<FieldState>,
}

/// DSPy's `Predict.dump_state()` layout.
#[derive(Serialize, Deserialize)]
struct PredictorWire {
    #[serde(default)]
    traces: Vec<Json>,
    #[serde(default)]
    train: Vec<Json>,
    demos: Vec<Demo>,
    signature: SignatureWire,
    #[serde(default)]
    lm: Json,
}

impl PredictorState {
    /// The state DSPy gives a fresh predictor of `kind` for `spec`: the spec's instructions (or
    /// DSPy's default sentence), each field's prefix (or one inferred from its name, as DSPy
    /// does) and description (or `${name}`), no demos.
    pub(crate) fn fresh(kind: PredictorKind, spec: &SignatureSpec) -> Self {
        let instructions = if spec.instructions.is_empty() {
            default_instructions(spec)
        } else {
            spec.instructions.clone()
        };
        let field = |f: &snakepit_grpc_bridge::api::dspy::FieldSpec| FieldState {
            prefix: if f.prefix.is_empty() {
                format!("{}:", infer_prefix(&f.name))
            } else {
                f.prefix.clone()
            },
            description: if f.description.is_empty() {
                format!("${{{}}}", f.name)
            } else {
                f.description.clone()
            },
        };
        let mut fields: Vec<FieldState> = spec.inputs.iter().map(field).collect();
        if kind == PredictorKind::ChainOfThought {
            fields.push(FieldState {
                prefix: "Reasoning:".into(),
                description: "${reasoning}".into(),
            });
        }
        fields.extend(spec.outputs.iter().map(field));
        PredictorState {
            instructions,
            fields,
            demos: Vec::new(),
        }
    }

    /// DSPy's JSON for this state.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(PredictorWire {
            traces: Vec::new(),
            train: Vec::new(),
            demos: self.demos.clone(),
            signature: SignatureWire {
                instructions: self.instructions.clone(),
                fields: self.fields.clone(),
            },
            lm: Json::Null,
        })
        .expect("a predictor state is JSON")
    }

    /// Reads DSPy's JSON of one predictor, checked against the predictor it is for.
    pub(crate) fn from_json(
        json: Json,
        name: &str,
        kind: PredictorKind,
        spec: &SignatureSpec,
    ) -> Result<Self, StateError> {
        let wire: PredictorWire =
            serde_json::from_value(json).map_err(|e| StateError::Malformed {
                predictor: name.to_owned(),
                message: e.to_string(),
            })?;
        let names = kind.field_names(spec);
        if wire.signature.fields.len() != names.len() {
            return Err(StateError::FieldCount {
                predictor: name.to_owned(),
                signature: spec.name.clone(),
                expected: names.len(),
                found: wire.signature.fields.len(),
            });
        }
        // DSPy keeps whole examples as demos (a labeled demo of one predictor has the fields of
        // the program's example), so extra fields are normal; a demo with none of the
        // predictor's fields is for another predictor.
        for (index, demo) in wire.demos.iter().enumerate() {
            if !demo.keys().any(|k| names.iter().any(|n| n == k)) {
                return Err(StateError::DemoFields {
                    predictor: name.to_owned(),
                    demo: index,
                    signature: spec.name.clone(),
                    fields: names.join(", "),
                    found: demo.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        Ok(PredictorState {
            instructions: wire.signature.instructions,
            fields: wire.signature.fields,
            demos: wire.demos,
        })
    }
}

/// DSPy's instructions for a signature without any: `Given the fields `a`, produce the fields `b`.`
pub(crate) fn default_instructions(spec: &SignatureSpec) -> String {
    format!(
        "Given the fields {}, produce the fields {}.",
        quoted_names(&spec.inputs),
        quoted_names(&spec.outputs)
    )
}

/// Field names as DSPy lists them in instructions: `` `a`, `b` ``.
pub(crate) fn quoted_names(fields: &[snakepit_grpc_bridge::api::dspy::FieldSpec]) -> String {
    fields
        .iter()
        .map(|f| format!("`{}`", f.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// DSPy's `infer_prefix`: `question` → `Question`, `camelCase` → `Camel Case`, `HTMLParser` →
/// `HTML Parser`, `text2number` → `Text 2 Number`.
pub(crate) fn infer_prefix(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    // Steps 1 and 2 of DSPy's: `_` before an upper case letter followed by lower case ones, and
    // between a lower case letter or digit and an upper case one.
    let mut snake = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if (next_lower && prev != '_') || prev.is_ascii_lowercase() || prev.is_ascii_digit() {
                snake.push('_');
            }
        }
        snake.push(c);
    }
    // Step 3: `_` between letters and digits, both ways.
    let chars: Vec<char> = snake.chars().collect();
    let mut spaced = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 {
            let prev = chars[i - 1];
            if (prev.is_ascii_alphabetic() && c.is_ascii_digit())
                || (prev.is_ascii_digit() && c.is_ascii_alphabetic())
            {
                spaced.push('_');
            }
        }
        spaced.push(c);
    }
    spaced
        .split('_')
        .map(|word| {
            let cased = word.chars().any(|c| c.is_alphabetic());
            if cased && word.chars().all(|c| !c.is_lowercase()) {
                word.to_owned()
            } else {
                let mut out = String::new();
                for (i, c) in word.chars().enumerate() {
                    if i == 0 {
                        out.extend(c.to_uppercase());
                    } else {
                        out.extend(c.to_lowercase());
                    }
                }
                out
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A saved program that cannot be read or does not fit the program.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The file could not be read or written.
    #[error("cannot {action} {path}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON, or not a JSON object.
    #[error("{path} is not a saved DSPy program: {message}")]
    NotAProgram {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The program has a predictor the file has no state for.
    #[error("the file has no state for predictor `{predictor}` (it has: {found})")]
    Missing {
        /// The predictor's DSPy name.
        predictor: String,
        /// The predictor names in the file.
        found: String,
    },
    /// The file has a predictor the program does not.
    #[error(
        "the file has predictor `{predictor}`, which this program does not have (it has: {expected})"
    )]
    Unexpected {
        /// The name in the file.
        predictor: String,
        /// The program's predictor names.
        expected: String,
    },
    /// A predictor's state is not DSPy's layout.
    #[error("the state of predictor `{predictor}` is not DSPy's: {message}")]
    Malformed {
        /// The predictor's DSPy name.
        predictor: String,
        /// What is wrong.
        message: String,
    },
    /// The saved signature has another number of fields.
    #[error(
        "predictor `{predictor}` was saved with {found} fields, but `{signature}` has {expected} here"
    )]
    FieldCount {
        /// The predictor's DSPy name.
        predictor: String,
        /// The signature's name.
        signature: String,
        /// The fields the program's signature has.
        expected: usize,
        /// The fields in the file.
        found: usize,
    },
    /// A demo has none of the predictor's fields.
    #[error(
        "demo {demo} of predictor `{predictor}` has none of the fields of `{signature}` ({fields}); it has: {found}"
    )]
    DemoFields {
        /// The predictor's DSPy name.
        predictor: String,
        /// The demo's index.
        demo: usize,
        /// The signature's name.
        signature: String,
        /// The fields it has.
        fields: String,
        /// The demo's fields.
        found: String,
    },
}

/// The JSON of a whole program: `states` by DSPy name, in DSPy's file layout.
pub(crate) fn program_json(states: Vec<(String, Json)>) -> Json {
    let metadata = serde_json::json!({
        "dependency_versions": { "dspy": snakepit_grpc_bridge::environment::pinned_dspy_version() }
    });
    let mut file = match <[_; 1]>::try_from(states) {
        // One Predict: DSPy saves the predictor's state itself.
        Ok([(name, state)]) if name == "self" => match state {
            Json::Object(map) => map,
            _ => unreachable!("a predictor state is an object"),
        },
        Ok(one) => one.into_iter().collect(),
        Err(states) => states.into_iter().collect(),
    };
    file.insert("metadata".into(), metadata);
    Json::Object(file)
}

/// Writes a program's JSON to `path`.
pub(crate) fn write_program(path: &Path, json: &Json) -> Result<(), StateError> {
    let mut text = serde_json::to_string_pretty(json).expect("JSON");
    text.push('\n');
    std::fs::write(path, text).map_err(|source| StateError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    })
}

/// Reads a program file into (DSPy name → predictor JSON), checked against the names the
/// program has.
pub(crate) fn read_program(
    path: &Path,
    expected: &[String],
) -> Result<JsonMap<String, Json>, StateError> {
    let text = std::fs::read_to_string(path).map_err(|source| StateError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    let not_a_program = |message: String| StateError::NotAProgram {
        path: path.to_owned(),
        message,
    };
    let json: Json = serde_json::from_str(&text).map_err(|e| not_a_program(e.to_string()))?;
    let Json::Object(mut file) = json else {
        return Err(not_a_program("it is not a JSON object".into()));
    };
    file.remove("metadata");
    if expected == ["self"] && file.contains_key("signature") {
        // One Predict, saved as its state itself.
        return Ok(JsonMap::from_iter([(
            "self".to_owned(),
            Json::Object(file),
        )]));
    }
    for name in expected {
        if !file.contains_key(name) {
            return Err(StateError::Missing {
                predictor: name.clone(),
                found: file.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
    }
    if let Some(extra) = file.keys().find(|k| !expected.contains(k)) {
        return Err(StateError::Unexpected {
            predictor: extra.clone(),
            expected: expected.join(", "),
        });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_inferred_as_dspy_does() {
        for (name, prefix) in [
            ("question", "Question"),
            ("snake_case_text", "Snake Case Text"),
            ("camelCaseText", "Camel Case Text"),
            ("HTMLParser", "HTML Parser"),
            ("text2number", "Text 2 Number"),
            ("HTMLParser2x", "HTML Parser 2 X"),
            ("answer", "Answer"),
        ] {
            assert_eq!(infer_prefix(name), prefix, "{name}");
        }
    }
}
