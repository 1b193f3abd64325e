//! Impls that exist only when every field type is a `DspyType`, and the one check that says so.
//!
//! A struct made of fields gets `Debug`, `Clone`, `PartialEq`, serde and the dspex traits. Were
//! they derived, a field type that is not a `DspyType` would fail each of them (nine errors, ours
//! last). Instead every impl carries `where for<'dspex> Ty: DspyType` for each field type: a
//! higher-ranked bound is not checked where it is written, so with a bad field type the impls
//! simply do not exist, and [`Bounded::check`] reports the field once, at its type.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;

/// The bounds, the serde attribute and the check for a set of field types.
pub(crate) struct Bounded {
    /// `for<'dspex> Ty: ::dspex::DspyType,` for each field type: a where clause's predicates.
    pub(crate) bounds: TokenStream,
    /// `#[derive(Serialize, Deserialize)]` and its `#[serde(...)]` with the same bounds.
    pub(crate) serde: TokenStream,
    /// An item that fails to compile, once per field, when a field type is not a `DspyType`.
    pub(crate) check: TokenStream,
}

pub(crate) fn bounded(field_types: &[&syn::Type]) -> Bounded {
    let bounds = quote! { #(for<'dspex> #field_types: ::dspex::DspyType,)* };
    // In a string, which the final renaming of `::dspex` paths does not see: named here.
    let dspex = crate::runtime_path::crate_path();
    let bound_text = field_types
        .iter()
        .map(|ty| format!("for<'dspex> {}: {dspex}::DspyType", ty.to_token_stream()))
        .collect::<Vec<_>>()
        .join(", ");
    let serde = quote! {
        #[derive(::dspex::__private::serde::Serialize, ::dspex::__private::serde::Deserialize)]
        #[serde(crate = "::dspex::__private::serde", bound(serialize = #bound_text, deserialize = #bound_text))]
    };
    let checks = field_types.iter().map(|ty| {
        quote_spanned! {ty.span()=> ::dspex::__private::assert_dspy_type::<#ty>(); }
    });
    let check = quote! {
        const _: () = {
            fn field_types_are_dspy_types() {
                #(#checks)*
            }
        };
    };
    Bounded {
        bounds,
        serde,
        check,
    }
}

/// `Debug`, `Clone` and `PartialEq` for a struct with the named `fields`, under `bounds`.
pub(crate) fn plain_impls(
    ident: &syn::Ident,
    fields: &[&syn::Ident],
    bounds: &TokenStream,
) -> TokenStream {
    let name = ident.to_string();
    let names: Vec<String> = fields.iter().map(|f| f.unraw().to_string()).collect();
    quote! {
        impl ::core::fmt::Debug for #ident where #bounds {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#name)
                    #(.field(#names, &self.#fields))*
                    .finish()
            }
        }

        impl ::core::clone::Clone for #ident where #bounds {
            fn clone(&self) -> Self {
                Self { #(#fields: ::core::clone::Clone::clone(&self.#fields),)* }
            }
        }

        impl ::core::cmp::PartialEq for #ident where #bounds {
            fn eq(&self, other: &Self) -> bool {
                true #(&& self.#fields == other.#fields)*
            }
        }
    }
}
