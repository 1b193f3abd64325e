//! The procedural macros of [dspex](https://docs.rs/dspex): `#[dspy_signature]`, `#[dspy_type]`,
//! `#[dspy_module]` and `defdspy!`. Use them through the `dspex` crate, which documents them; generated code names
//! runtime items only through `::dspex::__private` (or the user's name for the crate, when the
//! dependency is renamed: `runtime_path`).
//!
//! Each macro parses its input into plain structs (`ast`, `attr`), checks everything (`valid`,
//! `types`) collecting every error with its span, and only then quotes code (`expand_*`).

mod ast;
mod attr;
mod bounded;
mod defdspy;
mod expand_module;
mod expand_signature;
mod expand_type;
mod runtime_path;
mod types;
mod valid;

use proc_macro::TokenStream;

/// Declares a typed DSPy signature on a struct with `#[input]` and `#[output]` fields.
/// See the `dspex` crate documentation.
#[proc_macro_attribute]
pub fn dspy_signature(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_signature::expand(args.into(), item.into())
        .map(runtime_path::resolve)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes a unit enum (a `Literal`) or a struct with named fields (a nested object) usable as a
/// DSPy field type. See the `dspex` crate documentation.
#[proc_macro_attribute]
pub fn dspy_type(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_type::expand(args.into(), item.into())
        .map(runtime_path::resolve)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes a struct whose fields are programs (`Predict`, `ChainOfThought`, other
/// `#[dspy_module]`s) a DSPy program with a generated `new`. See the `dspex` crate documentation.
#[proc_macro_attribute]
pub fn dspy_module(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_module::expand(args.into(), item.into())
        .map(runtime_path::resolve)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Declares a typed wrapper around a Python class by dotted path. See the `dspex` crate
/// documentation.
#[proc_macro]
pub fn defdspy(input: TokenStream) -> TokenStream {
    defdspy::expand(input.into())
        .map(runtime_path::resolve)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
