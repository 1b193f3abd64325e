//! The macros' inputs as plain structs, built from syn.

use syn::ext::IdentExt;
use syn::{Attribute, Ident, LitStr, Type, Visibility};

use crate::attr::{self, Side};

/// One field of a `#[dspy_signature]` struct.
pub(crate) struct SigField {
    pub(crate) ident: Ident,
    pub(crate) vis: Visibility,
    pub(crate) ty: Type,
    pub(crate) side: Side,
    pub(crate) doc_attrs: Vec<Attribute>,
    pub(crate) description: Option<String>,
    pub(crate) prefix: Option<LitStr>,
}

impl SigField {
    /// The field's name as Python sees it (without `r#`).
    pub(crate) fn name(&self) -> String {
        self.ident.unraw().to_string()
    }
}

/// A `#[dspy_signature]` struct.
pub(crate) struct SignatureStruct {
    pub(crate) item: syn::ItemStruct,
    pub(crate) instructions: String,
    pub(crate) fields: Vec<SigField>,
}

fn is_ours(a: &Attribute) -> bool {
    a.path().is_ident("input") || a.path().is_ident("output")
}

/// The item with our field attributes (`#[input]`, `#[output]`) removed, for emitting it as the
/// user wrote it when it cannot be a signature.
pub(crate) fn without_our_attributes(mut item: syn::Item) -> syn::Item {
    if let syn::Item::Struct(s) = &mut item {
        for field in s.fields.iter_mut() {
            field.attrs.retain(|a| !is_ours(a));
        }
    }
    item
}

/// Builds the model of a signature struct; problems go to `errors`. `None` when the item is not
/// a struct with named fields at all.
pub(crate) fn signature(item: syn::Item, errors: &mut Vec<syn::Error>) -> Option<SignatureStruct> {
    let mut item = match item {
        syn::Item::Struct(s) => s,
        syn::Item::Enum(e) => {
            errors.push(syn::Error::new_spanned(
                e.enum_token,
                "#[dspy_signature] goes on a struct with named `#[input]` and `#[output]` fields, not an enum (for a Literal field type, use #[dspy_type] on the enum)",
            ));
            return None;
        }
        other => {
            errors.push(syn::Error::new_spanned(
                other,
                "#[dspy_signature] goes on a struct with named `#[input]` and `#[output]` fields",
            ));
            return None;
        }
    };
    let named = match &item.fields {
        syn::Fields::Named(named) => named.clone(),
        syn::Fields::Unnamed(unnamed) => {
            errors.push(syn::Error::new_spanned(
                unnamed,
                "a signature's fields need names (they become DSPy field names): write `struct Name { question: String, ... }`",
            ));
            return None;
        }
        syn::Fields::Unit => {
            errors.push(syn::Error::new_spanned(
                &item.ident,
                "a unit struct has no fields; a signature needs named `#[input]` and `#[output]` fields",
            ));
            return None;
        }
    };
    let mut fields = Vec::new();
    for field in &named.named {
        let ident = field.ident.clone().expect("named field");
        let attrs = attr::field_attrs(&field.attrs, errors);
        let side = match attrs.as_slice() {
            [] => {
                errors.push(syn::Error::new_spanned(
                    &ident,
                    format!("field `{}` needs `#[input]` or `#[output]`", ident.unraw()),
                ));
                continue;
            }
            [one] => one,
            [first, second, ..] => {
                let message = if first.side == second.side {
                    "duplicate attribute: give `#[input]` or `#[output]` once"
                } else {
                    "a field is either `#[input]` or `#[output]`, not both"
                };
                errors.push(syn::Error::new_spanned(&second.attr, message));
                // Keep the field (with its first attribute) so no further error follows from it.
                first
            }
        };
        let doc_attrs: Vec<Attribute> = field
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .cloned()
            .collect();
        let description = side
            .desc
            .as_ref()
            .map(LitStr::value)
            .or_else(|| attr::doc_text(&field.attrs));
        fields.push(SigField {
            ident,
            vis: field.vis.clone(),
            ty: field.ty.clone(),
            side: side.side,
            doc_attrs,
            description,
            prefix: side.prefix.clone(),
        });
    }
    // The struct itself stays, without our attributes.
    if let syn::Fields::Named(named) = &mut item.fields {
        for field in &mut named.named {
            field.attrs.retain(|a| !is_ours(a));
        }
    }
    Some(SignatureStruct {
        instructions: attr::doc_text(&item.attrs).unwrap_or_default(),
        item,
        fields,
    })
}
