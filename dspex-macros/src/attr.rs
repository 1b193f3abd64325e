//! Parsing of `#[input(...)]`, `#[output(...)]` and doc comments.

use syn::{Attribute, LitStr};

/// Which side of the signature a field is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Input,
    Output,
}

/// A field's `#[input]` or `#[output]` attribute.
pub(crate) struct FieldAttr {
    pub(crate) side: Side,
    pub(crate) attr: Attribute,
    pub(crate) desc: Option<LitStr>,
    pub(crate) prefix: Option<LitStr>,
}

/// The text of `///` comments, lines joined with newlines, trimmed.
pub(crate) fn doc_text(attrs: &[Attribute]) -> Option<String> {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|line| line.strip_prefix(' ').unwrap_or(&line).to_owned())
        .collect();
    let text = lines.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// Reads the `#[input]` / `#[output]` attributes of one field; every problem goes to `errors`.
pub(crate) fn field_attrs(attrs: &[Attribute], errors: &mut Vec<syn::Error>) -> Vec<FieldAttr> {
    let mut found = Vec::new();
    for attr in attrs {
        let side = if attr.path().is_ident("input") {
            Side::Input
        } else if attr.path().is_ident("output") {
            Side::Output
        } else {
            continue;
        };
        let mut parsed = FieldAttr {
            side,
            attr: attr.clone(),
            desc: None,
            prefix: None,
        };
        if let syn::Meta::List(_) = attr.meta {
            let result = attr.parse_nested_meta(|meta| {
                let slot = if meta.path.is_ident("desc") {
                    &mut parsed.desc
                } else if meta.path.is_ident("prefix") {
                    &mut parsed.prefix
                } else {
                    return Err(meta.error(
                        "unknown argument; `#[input]` and `#[output]` take `desc = \"...\"` and `prefix = \"...\"`",
                    ));
                };
                let name = if meta.path.is_ident("desc") { "desc" } else { "prefix" };
                let value: LitStr = meta.value()?.parse()?;
                if slot.is_some() {
                    return Err(syn::Error::new(
                        value.span(),
                        format!("duplicate `{name}`; give it once"),
                    ));
                }
                *slot = Some(value);
                Ok(())
            });
            if let Err(e) = result {
                errors.push(e);
            }
        } else if let syn::Meta::NameValue(nv) = &attr.meta {
            errors.push(syn::Error::new_spanned(
                nv,
                "write `#[input(desc = \"...\")]`, not `#[input = ...]`",
            ));
        }
        found.push(parsed);
    }
    found
}
