//! Expansion of `#[dspy_signature]`: only quoting; every check happened before.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote};

use crate::bounded::{Bounded, bounded, plain_impls};

use crate::ast::{self, SigField};
use crate::attr::Side;
use crate::valid;

/// Combines collected errors into one, so that the user sees all of them at once.
pub(crate) fn combine(errors: Vec<syn::Error>) -> syn::Result<()> {
    let mut iter = errors.into_iter();
    match iter.next() {
        None => Ok(()),
        Some(mut first) => {
            for e in iter {
                first.combine(e);
            }
            Err(first)
        }
    }
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Vec::new();
    if !args.is_empty() {
        errors.push(syn::Error::new_spanned(
            &args,
            "#[dspy_signature] takes no arguments; the struct's doc comment gives the instructions",
        ));
    }
    let item: syn::Item = syn::parse2(item)?;
    let original = item.clone();
    let sig = ast::signature(item, &mut errors);
    if let Some(sig) = &sig {
        valid::signature(sig, &mut errors);
    }
    if let Err(error) = combine(errors) {
        // The user's struct stays (without our attributes), so a mistake is reported here once,
        // not again wherever the struct is used.
        let kept = match sig {
            Some(sig) => sig.item.into_token_stream(),
            None => ast::without_our_attributes(original).into_token_stream(),
        };
        let error = error.into_compile_error();
        return Ok(quote! {
            #[allow(dead_code)]
            #kept
            #error
        });
    }
    let sig = sig.expect("no errors means a signature");
    Ok(quote_signature(&sig))
}

fn struct_fields(fields: &[&SigField]) -> TokenStream {
    let defs = fields.iter().map(|f| {
        let (docs, vis, ident, ty) = (&f.doc_attrs, &f.vis, &f.ident, &f.ty);
        quote! { #(#docs)* #vis #ident: #ty, }
    });
    quote! { #(#defs)* }
}

fn field_spec(f: &SigField) -> TokenStream {
    let name = f.name();
    let ty = &f.ty;
    let description = f.description.clone().unwrap_or_default();
    let prefix = f
        .prefix
        .as_ref()
        .map(syn::LitStr::value)
        .unwrap_or_default();
    quote! {
        ::dspex::__private::FieldSpec::new(#name, <#ty as ::dspex::DspyType>::field_type())
            .description(#description)
            .prefix(#prefix)
    }
}

fn quote_signature(sig: &ast::SignatureStruct) -> TokenStream {
    let item = &sig.item;
    let ident = &item.ident;
    let vis = &item.vis;
    let name = ident.to_string();
    let instructions = &sig.instructions;
    let input_ident = format_ident!("{}Input", ident);
    let output_ident = format_ident!("{}Output", ident);
    let inputs: Vec<&SigField> = sig
        .fields
        .iter()
        .filter(|f| f.side == Side::Input)
        .collect();
    let outputs: Vec<&SigField> = sig
        .fields
        .iter()
        .filter(|f| f.side == Side::Output)
        .collect();
    let input_fields = struct_fields(&inputs);
    let output_fields = struct_fields(&outputs);
    let input_specs = inputs.iter().map(|f| field_spec(f));
    let output_specs = outputs.iter().map(|f| field_spec(f));
    let to_inputs = inputs.iter().map(|f| {
        let (field, ty, key) = (&f.ident, &f.ty, f.name());
        quote! {
            map.insert(::std::string::String::from(#key), <#ty as ::dspex::DspyType>::to_value(&self.#field));
        }
    });
    let from_inputs = inputs.iter().map(|f| {
        let (field, ty, key) = (&f.ident, &f.ty, f.name());
        quote! { #field: ::dspex::__private::take_field::<#ty>(&mut inputs, #key)?, }
    });
    let to_outputs = outputs.iter().map(|f| {
        let (field, ty, key) = (&f.ident, &f.ty, f.name());
        quote! {
            map.insert(::std::string::String::from(#key), <#ty as ::dspex::DspyType>::to_value(&self.#field));
        }
    });
    let field_types = |fields: &[&SigField]| {
        fields
            .iter()
            .map(|f| {
                let (ty, key) = (&f.ty, f.name());
                quote! { (#key, <#ty as ::dspex::DspyType>::field_type()) }
            })
            .collect::<Vec<_>>()
    };
    let (input_types, output_types) = (field_types(&inputs), field_types(&outputs));
    let from_outputs = outputs.iter().map(|f| {
        let (field, ty, key) = (&f.ident, &f.ty, f.name());
        quote! { #field: ::dspex::__private::take_field::<#ty>(&mut outputs, #key)?, }
    });
    let input_doc = format!("The input fields of [`{name}`].");
    let output_doc = format!("The output fields of [`{name}`].");
    // Every generated impl holds only when every field type is a DspyType (see `bounded`).
    let field_types: Vec<&syn::Type> = sig.fields.iter().map(|f| &f.ty).collect();
    let Bounded {
        bounds,
        serde: derives,
        check,
    } = bounded(&field_types);
    let idents =
        |fields: &[&SigField]| fields.iter().map(|f| &f.ident).cloned().collect::<Vec<_>>();
    let input_impls = plain_impls(
        &input_ident,
        &idents(&inputs).iter().collect::<Vec<_>>(),
        &bounds,
    );
    let output_impls = plain_impls(
        &output_ident,
        &idents(&outputs).iter().collect::<Vec<_>>(),
        &bounds,
    );
    quote! {
        #[allow(dead_code)]
        #item

        #check

        #[doc = #input_doc]
        #derives
        #vis struct #input_ident { #input_fields }

        #input_impls

        #[doc = #output_doc]
        #derives
        #vis struct #output_ident { #output_fields }

        #output_impls

        impl ::dspex::SignatureInput for #input_ident where #bounds {
            fn to_inputs(&self) -> ::dspex::__private::Map {
                let mut map = ::dspex::__private::Map::new();
                #(#to_inputs)*
                map
            }

            fn from_inputs(
                mut inputs: ::dspex::__private::Map,
            ) -> ::core::result::Result<Self, ::dspex::DecodeError> {
                ::core::result::Result::Ok(Self { #(#from_inputs)* })
            }

            fn field_types() -> ::std::vec::Vec<(&'static str, ::dspex::__private::FieldType)> {
                ::std::vec![#(#input_types),*]
            }
        }

        impl ::dspex::SignatureOutput for #output_ident where #bounds {
            fn from_outputs(
                mut outputs: ::dspex::__private::Map,
            ) -> ::core::result::Result<Self, ::dspex::DecodeError> {
                ::core::result::Result::Ok(Self { #(#from_outputs)* })
            }

            fn to_outputs(&self) -> ::dspex::__private::Map {
                let mut map = ::dspex::__private::Map::new();
                #(#to_outputs)*
                map
            }

            fn field_types() -> ::std::vec::Vec<(&'static str, ::dspex::__private::FieldType)> {
                ::std::vec![#(#output_types),*]
            }
        }

        impl ::dspex::Signature for #ident where #bounds {
            type Input = #input_ident;
            type Output = #output_ident;

            fn spec() -> &'static ::dspex::__private::SignatureSpec {
                static SPEC: ::dspex::__private::OnceLock<::dspex::__private::SignatureSpec> =
                    ::dspex::__private::OnceLock::new();
                SPEC.get_or_init(|| {
                    ::dspex::__private::SignatureSpec::new(#name)
                        .instructions(#instructions)
                        #(.input_field(#input_specs))*
                        #(.output_field(#output_specs))*
                })
            }
        }

        impl #ident where #bounds {
            /// Runs `dspy.Predict` with this signature on the pool's LM.
            #vis async fn predict(
                dspex: &::dspex::Dspex,
                input: #input_ident,
            ) -> ::dspex::Result<#output_ident> {
                ::dspex::__private::predict::<Self>(dspex, input).await
            }

            /// Runs `dspy.ChainOfThought` with this signature: the reasoning and the outputs.
            #vis async fn chain_of_thought(
                dspex: &::dspex::Dspex,
                input: #input_ident,
            ) -> ::dspex::Result<::dspex::Reasoned<#output_ident>> {
                ::dspex::__private::chain_of_thought::<Self>(dspex, input).await
            }
        }
    }
}
