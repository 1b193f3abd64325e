//! Datasets of [`Example`]s: loaded from JSON Lines or CSV, split into train and dev sets with a
//! seed.
//!
//! Each line of a JSON Lines file is one example: a flat object holding the input and the output
//! fields by name (other keys are ignored), as DSPy's own examples are. Blank lines are skipped.
//! A CSV file has a header row naming the columns; each field is read from its column by the
//! field's type (see [`csv()`]).
//!
//! ```
//! use dspex::prelude::*;
//!
//! /// Answer the question.
//! #[dspy_signature]
//! pub struct QA {
//!     #[input]
//!     pub question: String,
//!     #[output]
//!     pub answer: String,
//! }
//!
//! # fn main() -> dspex::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("qa.jsonl");
//! # std::fs::write(&path, "{\"question\": \"2 + 2?\", \"answer\": \"4\"}\n{\"question\": \"3 + 3?\", \"answer\": \"6\"}\n").unwrap();
//! let examples: Vec<Example<QAInput, QAOutput>> = dspex::data::jsonl(&path)?;
//! assert_eq!(examples[1].output, QAOutput { answer: "6".into() });
//! let (train, dev) = dspex::data::split(examples, 0.5, 7);
//! assert_eq!((train.len(), dev.len()), (1, 1));
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use snakepit_grpc_bridge::api::dspy::FieldType;

use crate::Example;
use crate::signature::{SignatureInput, SignatureOutput};

/// What can go wrong reading a dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not an example of the wanted input and output: not JSON, or a field is missing or
    /// of the wrong type.
    #[error("{path}, line {line}: {message}")]
    Row {
        /// The file.
        path: PathBuf,
        /// The line, counted from 1.
        line: usize,
        /// What is wrong with it, naming the field.
        message: String,
    },
}

/// The examples of a JSON Lines file, in file order. A line that is not a JSON object holding
/// every input and output field (with values of the fields' types) is a [`DataError::Row`] naming
/// its line and the field.
pub fn jsonl<I, O>(path: impl AsRef<Path>) -> Result<Vec<Example<I, O>>, DataError>
where
    I: DeserializeOwned,
    O: DeserializeOwned,
{
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Read {
        path: path.to_owned(),
        source,
    })?;
    let row_error = |line: usize, message: String| DataError::Row {
        path: path.to_owned(),
        line,
        message,
    };
    let mut examples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| row_error(index + 1, format!("not JSON: {e}")))?;
        if !record.is_object() {
            return Err(row_error(
                index + 1,
                "not an object of field names and values".to_owned(),
            ));
        }
        let input =
            I::deserialize(&record).map_err(|e| row_error(index + 1, format!("input: {e}")))?;
        let output =
            O::deserialize(&record).map_err(|e| row_error(index + 1, format!("output: {e}")))?;
        examples.push(Example { input, output });
    }
    Ok(examples)
}

/// The examples of a CSV file (with a header row), in file order. Each input and output field is
/// read from the column of its name, by its type: text as it is, numbers and booleans
/// (`true`/`false`, `1`/`0`) parsed, an empty cell for an `Option` field is `None`, lists, maps
/// and `#[dspy_type]` structs are JSON in the cell, `#[dspy_type]` enums their variant's name.
/// Other columns are ignored. A missing column is a [`DataError::Row`] at line 1; a cell that
/// does not parse names its line and field.
///
/// ```
/// use dspex::prelude::*;
///
/// /// Add two numbers.
/// #[dspy_signature]
/// pub struct Sum {
///     #[input]
///     pub a: i64,
///     #[input]
///     pub b: i64,
///     #[output]
///     pub sum: i64,
///     #[output]
///     pub note: Option<String>,
/// }
///
/// # fn main() -> dspex::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("sums.csv");
/// # std::fs::write(&path, "a,b,sum,note\n1,2,3,\n2,2,4,\"even, both\"\n").unwrap();
/// let examples: Vec<Example<SumInput, SumOutput>> = dspex::data::csv(&path)?;
/// assert_eq!(examples[0].input, SumInput { a: 1, b: 2 });
/// assert_eq!(examples[1].output.note.as_deref(), Some("even, both"));
/// # Ok(())
/// # }
/// ```
pub fn csv<I, O>(path: impl AsRef<Path>) -> Result<Vec<Example<I, O>>, DataError>
where
    I: SignatureInput + DeserializeOwned,
    O: SignatureOutput + DeserializeOwned,
{
    let path = path.as_ref();
    let row_error = |line: usize, message: String| DataError::Row {
        path: path.to_owned(),
        line,
        message,
    };
    let mut reader = ::csv::Reader::from_path(path).map_err(|e| match e.into_kind() {
        ::csv::ErrorKind::Io(source) => DataError::Read {
            path: path.to_owned(),
            source,
        },
        other => row_error(1, format!("{other:?}")),
    })?;
    let headers = reader
        .headers()
        .map_err(|e| row_error(1, format!("cannot read the header row: {e}")))?
        .clone();
    let mut fields = I::field_types();
    fields.extend(O::field_types());
    let mut columns = Vec::new();
    for (name, field_type) in fields {
        let Some(column) = headers.iter().position(|h| h.trim() == name) else {
            let found: Vec<&str> = headers.iter().collect();
            return Err(row_error(
                1,
                format!("no column `{name}` (the header has: {})", found.join(", ")),
            ));
        };
        columns.push((name, field_type, column));
    }
    let mut examples = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            row_error(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let mut row = serde_json::Map::new();
        for (name, field_type, column) in &columns {
            let cell = record.get(*column).unwrap_or("");
            let value = cell_value(field_type, cell)
                .map_err(|message| row_error(line, format!("field `{name}`: {message}")))?;
            row.insert((*name).to_owned(), value);
        }
        let row = Json::Object(row);
        let input = I::deserialize(&row).map_err(|e| row_error(line, format!("input: {e}")))?;
        let output = O::deserialize(&row).map_err(|e| row_error(line, format!("output: {e}")))?;
        examples.push(Example { input, output });
    }
    Ok(examples)
}

/// A CSV cell read as a field of `field_type`.
fn cell_value(field_type: &FieldType, cell: &str) -> Result<Json, String> {
    let trimmed = cell.trim();
    match field_type {
        FieldType::String | FieldType::Literal(_) => Ok(Json::String(cell.to_owned())),
        FieldType::Integer => trimmed
            .parse::<i64>()
            .map(Json::from)
            .map_err(|_| format!("expected an integer, got {cell:?}")),
        FieldType::Float => trimmed
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number)
            .ok_or_else(|| format!("expected a number, got {cell:?}")),
        FieldType::Boolean => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Json::Bool(true)),
            "false" | "0" => Ok(Json::Bool(false)),
            _ => Err(format!("expected true or false, got {cell:?}")),
        },
        FieldType::Optional(_) if trimmed.is_empty() => Ok(Json::Null),
        FieldType::Optional(inner) => cell_value(inner, cell),
        FieldType::Any => {
            Ok(serde_json::from_str(trimmed).unwrap_or(Json::String(cell.to_owned())))
        }
        _ => serde_json::from_str(trimmed).map_err(|e| format!("expected JSON in the cell: {e}")),
    }
}

/// Splits `items` into a train set of `train_fraction` of them (rounded to the nearest whole item)
/// and a dev set of the rest, after a shuffle seeded by `seed`: the same seed gives the same split.
/// `train_fraction` is clamped to `0.0..=1.0`.
///
/// ```
/// let (train, dev) = dspex::data::split((0..10).collect::<Vec<_>>(), 0.8, 42);
/// assert_eq!((train.len(), dev.len()), (8, 2));
/// assert_eq!(dspex::data::split((0..10).collect::<Vec<_>>(), 0.8, 42).0, train);
/// ```
pub fn split<T>(mut items: Vec<T>, train_fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    let fraction = if train_fraction.is_nan() {
        0.0
    } else {
        train_fraction.clamp(0.0, 1.0)
    };
    fastrand::Rng::with_seed(seed).shuffle(&mut items);
    let train = ((items.len() as f64) * fraction).round() as usize;
    let dev = items.split_off(train.min(items.len()));
    (items, dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Deserialize)]
    struct In {
        question: String,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Out {
        answer: String,
        confidence: f64,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write");
        file
    }

    #[test]
    fn rows_become_examples_in_order_and_blank_lines_are_skipped() {
        let f = file(
            "{\"question\": \"a?\", \"answer\": \"A\", \"confidence\": 0.5, \"extra\": 1}\n\n\
             {\"answer\": \"B\", \"question\": \"b?\", \"confidence\": 1}\n",
        );
        let examples: Vec<Example<In, Out>> = jsonl(f.path()).expect("loads");
        assert_eq!(examples.len(), 2);
        assert_eq!(examples[0].input.question, "a?");
        assert_eq!(examples[1].output.answer, "B");
        assert_eq!(examples[1].output.confidence, 1.0);
    }

    #[test]
    fn a_bad_row_names_its_line_and_the_field() {
        let f = file(
            "{\"question\": \"a?\", \"answer\": \"A\", \"confidence\": 0.5}\n\
             {\"question\": \"b?\", \"confidence\": 0.5}\n",
        );
        let error = jsonl::<In, Out>(f.path()).expect_err("a missing field");
        let text = error.to_string();
        assert!(matches!(error, DataError::Row { line: 2, .. }), "{text}");
        assert!(text.contains("line 2") && text.contains("answer"), "{text}");

        let f = file("{\"question\": \"a?\", \"answer\": \"A\", \"confidence\": \"high\"}\n");
        let text = jsonl::<In, Out>(f.path())
            .expect_err("a wrong type")
            .to_string();
        assert!(
            text.contains("line 1") && text.contains("invalid type"),
            "{text}"
        );

        let f = file("[1, 2]\nnot json\n");
        let text = jsonl::<In, Out>(f.path())
            .expect_err("not an object")
            .to_string();
        assert!(
            text.contains("line 1") && text.contains("not an object"),
            "{text}"
        );
    }

    #[test]
    fn an_unreadable_file_says_which() {
        let error = jsonl::<In, Out>("/nonexistent/dir/data.jsonl").expect_err("no file");
        assert!(error.to_string().contains("/nonexistent/dir/data.jsonl"));
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn a_split_is_seeded_complete_and_sized() {
        let items: Vec<u32> = (0..101).collect();
        let (train, dev) = split(items.clone(), 0.7, 3);
        assert_eq!((train.len(), dev.len()), (71, 30));
        let mut all: Vec<u32> = train.iter().chain(&dev).copied().collect();
        all.sort();
        assert_eq!(all, items, "every item once");
        assert_eq!(
            split(items.clone(), 0.7, 3),
            (train.clone(), dev),
            "same seed, same split"
        );
        assert_ne!(
            split(items.clone(), 0.7, 4).0,
            train,
            "another seed, another split"
        );
        assert_eq!(split(items.clone(), 2.0, 1).0.len(), 101);
        assert_eq!(split(items.clone(), f64::NAN, 1).0.len(), 0);
        assert_eq!(split(Vec::<u32>::new(), 0.5, 1), (vec![], vec![]));
    }
}
