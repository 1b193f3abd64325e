//! `#[dspy_module]`: a struct of named programs (predictors and nested modules) becomes a
//! `dspex::Program`, with a generated `new`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(item)?;
    let mut errors: Option<syn::Error> = None;
    let mut error = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    if !args.is_empty() {
        error(syn::Error::new(
            args.span(),
            "#[dspy_module] takes no arguments",
        ));
    }
    if !input.generics.params.is_empty() {
        error(syn::Error::new(
            input.generics.span(),
            "a #[dspy_module] cannot be generic; name its signatures",
        ));
    }
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => named.named.iter().collect::<Vec<_>>(),
            other => {
                error(syn::Error::new(
                    other.span(),
                    "a #[dspy_module] has named fields, each a program (Predict, ChainOfThought or a #[dspy_module])",
                ));
                Vec::new()
            }
        },
        _ => {
            error(syn::Error::new(
                input.ident.span(),
                "#[dspy_module] goes on a struct whose fields are programs",
            ));
            Vec::new()
        }
    };
    if let Some(errors) = errors {
        // The user's item stays, so that one mistake is one error.
        let mut out = errors.into_compile_error();
        out.extend(quote! { #input });
        return Ok(out);
    }
    let ident = &input.ident;
    let vis = &input.vis;
    let names: Vec<_> = fields
        .iter()
        .map(|f| f.ident.clone().expect("named"))
        .collect();
    let keys: Vec<String> = names
        .iter()
        .map(|n| n.to_string().trim_start_matches("r#").to_owned())
        .collect();
    let types: Vec<_> = fields.iter().map(|f| &f.ty).collect();
    let dspex = format_ident!("dspex");
    let new_doc = format!("A `{ident}` on `dspex`: each predictor fresh, with the pool's LM.");
    // Every impl holds only when each field is a program (a higher-ranked bound, not checked where
    // it is written), and one check per field says which is not: one error, not one per impl.
    let bounds = quote! { #(for<'dspex> #types: ::dspex::Program,)* };
    let checks = types.iter().map(|ty| {
        quote_spanned! {ty.span()=> ::dspex::__private::assert_program::<#ty>(); }
    });
    let name = ident.to_string();
    Ok(quote! {
        #input

        const _: () = {
            fn fields_are_programs() {
                #(#checks)*
            }
        };

        impl ::core::clone::Clone for #ident where #bounds {
            fn clone(&self) -> Self {
                Self { #( #names: ::core::clone::Clone::clone(&self.#names), )* }
            }
        }

        impl ::core::fmt::Debug for #ident where #bounds {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#name)
                    #( .field(#keys, &self.#names) )*
                    .finish()
            }
        }

        impl #ident where #bounds {
            #[doc = #new_doc]
            #vis fn new(#dspex: &::dspex::Dspex) -> Self {
                Self { #( #names: <#types as ::dspex::Program>::__build(#dspex), )* }
            }
        }

        impl ::dspex::Program for #ident where #bounds {
            fn __build(#dspex: &::dspex::Dspex) -> Self {
                Self::new(#dspex)
            }

            fn __visit<'dspex>(
                &'dspex self,
                path: &str,
                visit: &mut dyn FnMut(&str, &'dspex ::dspex::Predictor),
            ) {
                #(
                    ::dspex::Program::__visit(
                        &self.#names,
                        &::dspex::__private::join_path(path, #keys),
                        visit,
                    );
                )*
            }

            fn __map(
                &self,
                path: &str,
                map: &mut dyn FnMut(&str, &::dspex::Predictor) -> ::dspex::Predictor,
            ) -> Self {
                Self {
                    #(
                        #names: ::dspex::Program::__map(
                            &self.#names,
                            &::dspex::__private::join_path(path, #keys),
                            map,
                        ),
                    )*
                }
            }
        }
    })
}
