//! Syntactic checks of field types, for the mistakes the trait system would report poorly.
//! Everything else is left to the `DspyType` trait, whose own message names the fix.

use syn::{GenericArgument, PathArguments, Type};

/// Integer types that cannot round-trip exactly through the wire's 64-bit signed integers.
const WIDE_INTEGERS: &[&str] = &["u64", "usize", "i128", "u128"];

fn type_args(segment: &syn::PathSegment) -> Vec<&Type> {
    match &segment.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Checks `ty` and what it contains; every problem goes to `errors`.
pub(crate) fn check(ty: &Type, errors: &mut Vec<syn::Error>) {
    let error = |message: &str| syn::Error::new_spanned(ty, message);
    match ty {
        Type::Reference(_) => errors.push(error(
            "references cannot cross to Python; use an owned type such as `String` or `Vec<T>`",
        )),
        Type::Tuple(t) if t.elems.is_empty() => errors.push(error(
            "`()` carries nothing; remove the field or give it a type",
        )),
        Type::Tuple(_) => errors.push(error(
            "tuples are not supported as DSPy fields; use a #[dspy_type] struct with named fields",
        )),
        Type::Ptr(_) => errors.push(error(
            "raw pointers cannot cross to Python; use an owned type",
        )),
        Type::TraitObject(_) | Type::ImplTrait(_) => errors.push(error(
            "trait objects have no DSPy type; use a concrete type (or a #[dspy_type])",
        )),
        Type::Array(_) | Type::Slice(_) => {
            errors.push(error("arrays and slices are not supported; use `Vec<T>`"))
        }
        Type::Paren(p) => check(&p.elem, errors),
        Type::Group(g) => check(&g.elem, errors),
        Type::Path(path) if path.qself.is_none() => {
            let Some(last) = path.path.segments.last() else {
                return;
            };
            let name = last.ident.to_string();
            if WIDE_INTEGERS.contains(&name.as_str()) && path.path.segments.len() == 1 {
                errors.push(error(&format!(
                    "`{name}` cannot round-trip exactly: integers cross the bridge (and Python's JSON) as 64-bit signed values; use `i64`, a smaller integer type, or `String`"
                )));
                return;
            }
            if name == "Box"
                && let Some(Type::TraitObject(_)) = type_args(last).first()
            {
                errors.push(error(
                    "`Box<dyn ...>` has no DSPy type; use a concrete type (or a #[dspy_type])",
                ));
                return;
            }
            if name == "HashMap" || name == "BTreeMap" {
                let args = type_args(last);
                if let Some(key) = args.first() {
                    let is_string = matches!(key, Type::Path(p)
                        if p.path.segments.last().is_some_and(|s| s.ident == "String"));
                    if !is_string {
                        errors.push(syn::Error::new_spanned(
                            key,
                            "map keys must be `String`: DSPy maps are JSON objects with string keys",
                        ));
                    }
                }
                if let Some(value) = args.get(1) {
                    check(value, errors);
                }
                return;
            }
            if name == "Vec" || name == "Option" {
                for inner in type_args(last) {
                    check(inner, errors);
                }
            }
        }
        Type::Path(_) => {}
        Type::Never(_) => errors.push(error("`!` cannot be a DSPy field")),
        _ => errors.push(error("this type cannot be a DSPy field")),
    }
}
