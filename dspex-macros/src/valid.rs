//! Semantic checks of a signature, with spans.

use crate::ast::SignatureStruct;
use crate::attr::Side;
use crate::types;

/// Field names DSPy modules add themselves.
const RESERVED: &[(&str, &str)] = &[
    ("reasoning", "ChainOfThought adds a `reasoning` output"),
    ("trajectory", "ReAct adds a `trajectory` output"),
];

/// Python keywords, which cannot name DSPy fields.
const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Checks field names (reserved by DSPy or Python) and is used by both macros.
pub(crate) fn check_name(ident: &syn::Ident, name: &str, errors: &mut Vec<syn::Error>) {
    if let Some((_, why)) = RESERVED.iter().find(|(n, _)| *n == name) {
        errors.push(syn::Error::new_spanned(
            ident,
            format!("`{name}` is reserved: {why}; rename the field"),
        ));
    } else if PYTHON_KEYWORDS.contains(&name) {
        errors.push(syn::Error::new_spanned(
            ident,
            format!("`{name}` is a Python keyword and cannot name a DSPy field; rename it"),
        ));
    } else if name.starts_with('_') {
        errors.push(syn::Error::new_spanned(
            ident,
            "DSPy field names cannot start with `_`; rename the field",
        ));
    }
}

/// Every check of a signature; problems go to `errors`.
pub(crate) fn signature(sig: &SignatureStruct, errors: &mut Vec<syn::Error>) {
    let item = &sig.item;
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &item.generics,
            "a signature cannot be generic: its fields must have concrete DSPy types",
        ));
    }
    let has = |side| sig.fields.iter().any(|f| f.side == side);
    if !has(Side::Input) {
        errors.push(syn::Error::new_spanned(
            &item.ident,
            "a signature needs at least one `#[input]` field",
        ));
    }
    if !has(Side::Output) {
        errors.push(syn::Error::new_spanned(
            &item.ident,
            "a signature needs at least one `#[output]` field",
        ));
    }
    for field in &sig.fields {
        check_name(&field.ident, &field.name(), errors);
        types::check(&field.ty, errors);
    }
}
