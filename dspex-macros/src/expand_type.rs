//! `#[dspy_type]`: parse, validate (every problem collected), then expand (quoting only), for
//! unit enums (Literal) and structs (nested objects).

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;

use crate::attr::doc_text;
use crate::bounded::{Bounded, bounded, plain_impls};
use crate::expand_signature::combine;
use crate::{types, valid};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Vec::new();
    if !args.is_empty() {
        errors.push(syn::Error::new_spanned(
            &args,
            "#[dspy_type] takes no arguments",
        ));
    }
    let item: syn::Item = syn::parse2(item)?;
    let generics = match &item {
        syn::Item::Struct(s) => Some(&s.generics),
        syn::Item::Enum(e) => Some(&e.generics),
        _ => None,
    };
    if let Some(generics) = generics
        && !generics.params.is_empty()
    {
        errors.push(syn::Error::new_spanned(
            generics,
            "a #[dspy_type] cannot be generic: DSPy needs one concrete type",
        ));
    }
    match &item {
        syn::Item::Enum(e) => validate_enum(e, &mut errors),
        syn::Item::Struct(s) => validate_struct(s, &mut errors),
        other => errors.push(syn::Error::new_spanned(
            other,
            "#[dspy_type] goes on a unit enum (a Literal) or a struct with named fields (a nested object)",
        )),
    }
    if let Err(error) = combine(errors) {
        // The user's item stays, so a mistake is reported here once, not again wherever the
        // type is used.
        let error = error.into_compile_error();
        return Ok(quote! {
            #[allow(dead_code)]
            #item
            #error
        });
    }
    Ok(match &item {
        syn::Item::Enum(e) => quote_enum(e),
        syn::Item::Struct(s) => quote_struct(s),
        _ => unreachable!("validated: an enum or a struct"),
    })
}

/// The derives of a unit enum (a Literal): it has no fields, so nothing to bound.
fn enum_derives() -> TokenStream {
    quote! {
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::marker::Copy,
            ::core::cmp::PartialEq,
            ::core::cmp::Eq,
            ::core::hash::Hash,
            ::dspex::__private::serde::Serialize,
            ::dspex::__private::serde::Deserialize,
        )]
        #[serde(crate = "::dspex::__private::serde")]
    }
}

fn validate_enum(e: &syn::ItemEnum, errors: &mut Vec<syn::Error>) {
    if e.variants.is_empty() {
        errors.push(syn::Error::new_spanned(
            &e.ident,
            "a #[dspy_type] enum needs at least one variant (it becomes a Literal of their names)",
        ));
    }
    for variant in &e.variants {
        if !matches!(variant.fields, syn::Fields::Unit) {
            errors.push(syn::Error::new_spanned(
                &variant.fields,
                format!(
                    "#[dspy_type] enums become Literal[...] of their variant names and carry no data; make `{}` a unit variant, or model the data as a #[dspy_type] struct",
                    variant.ident
                ),
            ));
        }
    }
}

fn quote_enum(e: &syn::ItemEnum) -> TokenStream {
    let ident = &e.ident;
    let type_name = ident.to_string();
    let names: Vec<String> = e
        .variants
        .iter()
        .map(|v| v.ident.unraw().to_string())
        .collect();
    let variants: Vec<&syn::Ident> = e.variants.iter().map(|v| &v.ident).collect();
    let derives = enum_derives();
    quote! {
        #derives
        #e

        impl ::dspex::DspyType for #ident {
            fn field_type() -> ::dspex::__private::FieldType {
                ::dspex::__private::FieldType::literal([#(#names),*])
            }

            fn to_value(&self) -> ::dspex::__private::Value {
                ::dspex::__private::Value::from(match self {
                    #(Self::#variants => #names,)*
                })
            }

            fn from_value(
                value: ::dspex::__private::Value,
            ) -> ::core::result::Result<Self, ::dspex::DecodeError> {
                let name = ::dspex::__private::expect_variant(value, #type_name, &[#(#names),*])?;
                match name.as_str() {
                    #(#names => ::core::result::Result::Ok(Self::#variants),)*
                    _ => ::core::unreachable!("expect_variant checked the name"),
                }
            }
        }
    }
}

fn validate_struct(s: &syn::ItemStruct, errors: &mut Vec<syn::Error>) {
    let fields = match &s.fields {
        syn::Fields::Named(named) => &named.named,
        syn::Fields::Unnamed(unnamed) => {
            return errors.push(syn::Error::new_spanned(
                unnamed,
                "a #[dspy_type] struct needs named fields (they become the object's properties)",
            ));
        }
        syn::Fields::Unit => {
            return errors.push(syn::Error::new_spanned(
                &s.ident,
                "a unit struct has no properties; a #[dspy_type] struct needs named fields",
            ));
        }
    };
    for field in fields {
        let ident = field.ident.as_ref().expect("named");
        valid::check_name(ident, &ident.unraw().to_string(), errors);
        types::check(&field.ty, errors);
        if mentions(&field.ty, &s.ident) {
            errors.push(syn::Error::new_spanned(
                &field.ty,
                format!(
                    "a #[dspy_type] cannot contain itself (DSPy field types are not recursive); give `{}` a field of another type",
                    s.ident
                ),
            ));
        }
    }
}

/// Whether `ty` names the type `own` (or `Self`) anywhere inside it, as a path of its own
/// (`Node`, `Vec<Node>`), not as the last segment of another path (`other::Node`).
fn mentions(ty: &syn::Type, own: &syn::Ident) -> bool {
    // `::` arrives as two `:` puncts: remember the last one before an ident.
    fn walk_paths(tokens: proc_macro2::TokenStream, own: &syn::Ident) -> bool {
        let mut previous_colon = false;
        for tree in tokens {
            match &tree {
                proc_macro2::TokenTree::Punct(p) if p.as_char() == ':' => {
                    previous_colon = true;
                    continue;
                }
                proc_macro2::TokenTree::Ident(ident)
                    if !previous_colon && (ident == own || ident == "Self") =>
                {
                    return true;
                }
                proc_macro2::TokenTree::Group(group) if walk_paths(group.stream(), own) => {
                    return true;
                }
                _ => {}
            }
            previous_colon = false;
        }
        false
    }
    walk_paths(quote::ToTokens::to_token_stream(ty), own)
}

fn quote_struct(s: &syn::ItemStruct) -> TokenStream {
    let fields: Vec<&syn::Field> = s.fields.iter().collect();
    let ident = &s.ident;
    let type_name = ident.to_string();
    let idents: Vec<&syn::Ident> = fields
        .iter()
        .map(|f| f.ident.as_ref().expect("named"))
        .collect();
    let names: Vec<String> = idents.iter().map(|i| i.unraw().to_string()).collect();
    let tys: Vec<&syn::Type> = fields.iter().map(|f| &f.ty).collect();
    let descriptions = fields.iter().map(|f| match doc_text(&f.attrs) {
        Some(doc) => quote!(::core::option::Option::Some(::std::string::String::from(#doc))),
        None => quote!(::core::option::Option::None),
    });
    // Bounded like a signature's structs (see `bounded`): a field type that is not a DspyType is
    // one error, at the field, instead of one per derived trait.
    let Bounded {
        bounds,
        serde,
        check,
    } = bounded(&tys);
    let plain = plain_impls(ident, &idents, &bounds);
    quote! {
        #serde
        #s

        #check

        #plain

        impl ::dspex::DspyType for #ident where #bounds {
            fn field_type() -> ::dspex::__private::FieldType {
                ::dspex::__private::FieldType::Object(::dspex::__private::ObjectType {
                    name: ::std::string::String::from(#type_name),
                    fields: ::std::vec![#(
                        ::dspex::__private::ObjectField {
                            name: ::std::string::String::from(#names),
                            field_type: <#tys as ::dspex::DspyType>::field_type(),
                            description: #descriptions,
                        }
                    ),*],
                })
            }

            fn to_value(&self) -> ::dspex::__private::Value {
                let mut map = ::dspex::__private::Map::new();
                #(map.insert(::std::string::String::from(#names), <#tys as ::dspex::DspyType>::to_value(&self.#idents));)*
                ::dspex::__private::Value::Map(map)
            }

            fn from_value(
                value: ::dspex::__private::Value,
            ) -> ::core::result::Result<Self, ::dspex::DecodeError> {
                let mut map = ::dspex::__private::expect_map(value, #type_name)?;
                ::core::result::Result::Ok(Self {
                    #(#idents: ::dspex::__private::take_field::<#tys>(&mut map, #names)?,)*
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn a_type_that_contains_itself_is_found_and_a_namesake_elsewhere_is_not() {
        let own: syn::Ident = syn::parse_quote!(Node);
        let found = |ty: syn::Type| mentions(&ty, &own);
        assert!(found(syn::parse_quote!(Vec<Node>)));
        assert!(found(syn::parse_quote!(HashMap<String, Vec<Node>>)));
        assert!(found(syn::parse_quote!(Option<Self>)));
        assert!(!found(syn::parse_quote!(Vec<other::Node>)));
        assert!(!found(syn::parse_quote!(Vec<String>)));
    }
}
