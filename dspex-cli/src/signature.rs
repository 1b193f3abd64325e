//! DSPy's string signatures (`"context: list[str], question -> answer: str"`) as typed specs, and
//! command-line values read by their field's type.

use dspex::Value;
use dspex::snakepit_grpc_bridge::api::dspy::{FieldType, SignatureSpec};

/// Splits at top-level commas (not inside `[...]`).
fn split_fields(text: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A type as DSPy writes it: `str`, `int`, `float`, `bool`, `list[T]`, `dict[str, T]`,
/// `Optional[T]`, `Literal['a', 'b']`.
fn parse_type(text: &str) -> Result<FieldType, String> {
    let text = text.trim();
    let inner = |prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(']'))
            .map(str::trim)
    };
    Ok(match text {
        "str" => FieldType::String,
        "int" => FieldType::Integer,
        "float" => FieldType::Float,
        "bool" => FieldType::Boolean,
        _ => {
            if let Some(item) = inner("list[") {
                FieldType::list(parse_type(item)?)
            } else if let Some(args) = inner("dict[") {
                let value = args
                    .strip_prefix("str")
                    .and_then(|rest| rest.trim_start().strip_prefix(','))
                    .ok_or_else(|| format!("`{text}`: dict keys are str (`dict[str, T]`)"))?;
                FieldType::map(parse_type(value)?)
            } else if let Some(item) = inner("Optional[") {
                FieldType::optional(parse_type(item)?)
            } else if let Some(values) = inner("Literal[") {
                let values: Vec<String> = split_fields(values)
                    .into_iter()
                    .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_owned())
                    .collect();
                if values.iter().any(String::is_empty) {
                    return Err(format!("`{text}`: a Literal lists quoted values"));
                }
                FieldType::literal(values)
            } else {
                return Err(format!(
                    "unknown type `{text}` (use str, int, float, bool, list[T], dict[str, T], Optional[T] or Literal['a', 'b'])"
                ));
            }
        }
    })
}

/// The fields of one side: `name` (a `str`) or `name: type`, comma-separated.
fn parse_side(text: &str, side: &str) -> Result<Vec<(String, FieldType)>, String> {
    let mut fields = Vec::new();
    for part in split_fields(text) {
        let (name, field_type) = match part.split_once(':') {
            Some((name, ty)) => (name.trim(), parse_type(ty)?),
            None => (part.trim(), FieldType::String),
        };
        let identifier = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            return Err(format!("`{name}` is not a field name ({side} side)"));
        }
        if fields.iter().any(|(n, _)| n == name) {
            return Err(format!("two fields named `{name}`"));
        }
        fields.push((name.to_owned(), field_type));
    }
    Ok(fields)
}

/// `"inputs -> outputs"` as a spec named `name`.
pub(crate) fn parse(text: &str, instructions: Option<&str>) -> Result<SignatureSpec, String> {
    let (inputs, outputs) = text
        .split_once("->")
        .ok_or_else(|| format!("`{text}` has no `->` between its inputs and its outputs"))?;
    let mut spec = SignatureSpec::new("Run");
    if let Some(instructions) = instructions {
        spec = spec.instructions(instructions);
    }
    for (name, field_type) in parse_side(inputs, "input")? {
        spec = spec.input(name, field_type);
    }
    for (name, field_type) in parse_side(outputs, "output")? {
        spec = spec.output(name, field_type);
    }
    Ok(spec)
}

/// A command-line value read as a field of `field_type`: text as it is, numbers and booleans
/// parsed, anything else JSON.
pub(crate) fn value(field_type: &FieldType, text: &str) -> Result<Value, String> {
    match field_type {
        FieldType::String | FieldType::Literal(_) => Ok(Value::from(text)),
        FieldType::Integer => text
            .trim()
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| format!("expected an integer, got {text:?}")),
        FieldType::Float => text
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| format!("expected a number, got {text:?}")),
        FieldType::Boolean => match text.trim() {
            "true" | "True" => Ok(Value::Bool(true)),
            "false" | "False" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, got {text:?}")),
        },
        FieldType::Optional(_) if text.is_empty() => Ok(Value::Null),
        FieldType::Optional(inner) => value(inner, text),
        _ => serde_json::from_str::<serde_json::Value>(text)
            .map(Value::from)
            .map_err(|e| format!("expected JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dspy_string_signatures_become_typed_specs() {
        let spec = parse(
            "context: list[str], question -> answer: str, score: float, tags: dict[str, Optional[int]], mood: Literal['up', \"down\"]",
            None,
        )
        .unwrap();
        assert_eq!(
            spec.inputs[0].field_type,
            FieldType::list(FieldType::String)
        );
        assert_eq!(spec.inputs[1].field_type, FieldType::String);
        assert_eq!(spec.outputs[1].field_type, FieldType::Float);
        assert_eq!(
            spec.outputs[2].field_type,
            FieldType::map(FieldType::optional(FieldType::Integer))
        );
        assert_eq!(
            spec.outputs[3].field_type,
            FieldType::literal(["up", "down"])
        );
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        assert!(
            parse("question answer", None)
                .unwrap_err()
                .contains("no `->`")
        );
        assert!(
            parse("q -> a: tuple", None)
                .unwrap_err()
                .contains("unknown type `tuple`")
        );
        assert!(
            parse("q, q -> a", None)
                .unwrap_err()
                .contains("two fields named `q`")
        );
        assert!(
            parse("2q -> a", None)
                .unwrap_err()
                .contains("not a field name")
        );
        assert!(
            value(&FieldType::Integer, "x")
                .unwrap_err()
                .contains("integer")
        );
        assert_eq!(
            value(&FieldType::list(FieldType::Integer), "[1, 2]").unwrap(),
            Value::List(vec![Value::Int(1), Value::Int(2)])
        );
    }
}
