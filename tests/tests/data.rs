#![allow(missing_docs)]
//! Datasets from CSV: each field read by its type, errors naming the line and the field.

use std::collections::HashMap;

use dspex::data::DataError;
use dspex::prelude::*;

#[dspy_type]
pub enum Mood {
    Happy,
    Sad,
}

/// Every kind of field a CSV cell holds.
#[dspy_signature]
pub struct Row {
    #[input]
    pub text: String,
    #[input]
    pub count: u32,
    #[input]
    pub weight: f64,
    #[input]
    pub flag: bool,
    #[input]
    pub tags: Vec<String>,
    #[input]
    pub scores: HashMap<String, i64>,
    #[output]
    pub mood: Mood,
    #[output]
    pub note: Option<String>,
}

type Ex = Example<RowInput, RowOutput>;

fn file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

const HEADER: &str = "text,count,weight,flag,tags,scores,mood,note,ignored\n";

#[test]
fn cells_are_read_by_their_field_s_type() {
    let csv = file(&format!(
        "{HEADER}\"a, b\",3,0.5,true,\"[\"\"x\"\"]\",\"{{\"\"k\"\": 1}}\",Happy,,zzz\nc,0,1,0,[],{{}},Sad,kept,\n"
    ));
    let rows: Vec<Ex> = dspex::data::csv(csv.path()).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].input.text, "a, b");
    assert_eq!(rows[0].input.count, 3);
    assert_eq!(rows[0].input.weight, 0.5);
    assert!(rows[0].input.flag && !rows[1].input.flag);
    assert_eq!(rows[0].input.tags, ["x"]);
    assert_eq!(rows[0].input.scores["k"], 1);
    assert_eq!(rows[0].output.mood, Mood::Happy);
    assert_eq!(rows[0].output.note, None);
    assert_eq!(rows[1].output.note.as_deref(), Some("kept"));
}

#[test]
fn a_bad_cell_names_its_line_and_field_and_a_missing_column_its_name() {
    let csv = file(&format!(
        "{HEADER}a,3,0.5,true,[],{{}},Happy,,\nb,three,0.5,true,[],{{}},Happy,,\n"
    ));
    match dspex::data::csv::<RowInput, RowOutput>(csv.path()).unwrap_err() {
        DataError::Row { line, message, .. } => {
            assert_eq!(line, 3);
            assert!(
                message.contains("`count`") && message.contains("three"),
                "{message}"
            );
        }
        other => panic!("{other}"),
    }
    let csv = file(&format!("{HEADER}a,3,0.5,true,[],{{}},Ecstatic,,\n"));
    match dspex::data::csv::<RowInput, RowOutput>(csv.path()).unwrap_err() {
        DataError::Row { line, message, .. } => {
            assert_eq!(line, 2);
            assert!(message.contains("Ecstatic"), "{message}");
        }
        other => panic!("{other}"),
    }
    let csv = file("text,count\na,1\n");
    match dspex::data::csv::<RowInput, RowOutput>(csv.path()).unwrap_err() {
        DataError::Row { line, message, .. } => {
            assert_eq!(line, 1);
            assert!(message.contains("no column `weight`"), "{message}");
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        dspex::data::csv::<RowInput, RowOutput>("/nonexistent/rows.csv").unwrap_err(),
        DataError::Read { .. }
    ));
}
