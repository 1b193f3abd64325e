//! `defdspy!`: a typed wrapper around any Python class by dotted path.
//!
//! ```text
//! defdspy! {
//!     /// A counter kept in Python.
//!     #[python = "my_module.Counter"]
//!     pub struct Counter {
//!         fn new(start: i64, #[python = "by"] step: i64);   // constructor keyword arguments
//!                                             // (`by=`: an argument may have its own Python name)
//!         fn call(times: i64) -> i64;         // what runs it: `call` and `execute` (Python `__call__`)
//!         fn doubled() -> i64;                // any other method, same name in Python
//!         #[python = "read"]
//!         fn read_value() -> i64;             // ... or another Python name
//!     }
//! }
//! ```
//!
//! A wrapper may take one generic parameter, the signature: `pub struct Mcc<S> { ... }` passes
//! `S::spec()` as the constructor's first argument; an argument of type `S::Input` is spread into
//! keyword arguments and a return type `S::Output` is read as the signature's outputs.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Ident, LitStr, Token, Type, Visibility, braced, parenthesized};

use crate::expand_signature::combine;
use crate::types;

struct Arg {
    attrs: Vec<Attribute>,
    ident: Ident,
    ty: Type,
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let ident = input.call(Ident::parse_any)?;
        if ident == "self" {
            return Err(syn::Error::new(
                ident.span(),
                "leave out `self`: every declared method is called on the Python object",
            ));
        }
        input.parse::<Token![:]>()?;
        Ok(Arg {
            attrs,
            ident,
            ty: input.parse()?,
        })
    }
}

struct Method {
    attrs: Vec<Attribute>,
    ident: Ident,
    args: Vec<Arg>,
    output: Option<Type>,
}

impl Parse for Method {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        input.parse::<Token![fn]>().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected `fn name(arg: Type, ...) -> Type;` inside a defdspy! struct",
            )
        })?;
        let ident: Ident = input.parse()?;
        let content;
        let parens = parenthesized!(content in input);
        let args: Punctuated<Arg, Token![,]> = content.parse_terminated(Arg::parse, Token![,])?;
        let output: Option<Type> = if input.peek(Token![->]) {
            input.parse::<Token![->]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        // Where the `;` belongs: right after the declaration's last token, not at whatever
        // follows (often the next line's `fn`).
        let end = output
            .as_ref()
            .and_then(|ty| quote::ToTokens::to_token_stream(ty).into_iter().last())
            .map_or_else(|| parens.span.close(), |token| token.span());
        input.parse::<Token![;]>().map_err(|e| {
            // A body is pointed at where it starts; a missing `;` where it belongs.
            let at = if input.peek(syn::token::Brace) {
                e.span()
            } else {
                end
            };
            syn::Error::new(
                at,
                "end each declaration with `;` (defdspy! declares methods, it does not define them)",
            )
        })?;
        Ok(Method {
            attrs,
            ident,
            args: args.into_iter().collect(),
            output,
        })
    }
}

struct Wrapper {
    attrs: Vec<Attribute>,
    vis: Visibility,
    ident: Ident,
    generics: syn::Generics,
    methods: Vec<Method>,
}

impl Parse for Wrapper {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        input.parse::<Token![struct]>().map_err(|e| {
            syn::Error::new(
                e.span(),
                "defdspy! declares one wrapper: `#[python = \"module.Class\"] pub struct Name { fn ...; }`",
            )
        })?;
        let ident: Ident = input.parse()?;
        let generics: syn::Generics = input.parse()?;
        let content;
        braced!(content in input);
        let mut methods = Vec::new();
        while !content.is_empty() {
            methods.push(content.parse()?);
        }
        if !input.is_empty() {
            return Err(input.error("defdspy! takes one struct; write one defdspy! per wrapper"));
        }
        Ok(Wrapper {
            attrs,
            vis,
            ident,
            generics,
            methods,
        })
    }
}

/// The value of `#[python = "..."]` among `attrs`, with errors for other non-doc attributes.
fn python_name(attrs: &[Attribute], errors: &mut Vec<syn::Error>) -> Option<LitStr> {
    let mut found = None;
    for attr in attrs {
        if attr.path().is_ident("doc") {
            continue;
        }
        if attr.path().is_ident("python") {
            match &attr.meta {
                syn::Meta::NameValue(syn::MetaNameValue {
                    value:
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(s),
                            ..
                        }),
                    ..
                }) => {
                    if found.is_some() {
                        errors.push(syn::Error::new_spanned(attr, "duplicate `#[python = ...]`"));
                    }
                    found = Some(s.clone());
                }
                _ => errors.push(syn::Error::new_spanned(
                    attr,
                    "write `#[python = \"name\"]` with a string",
                )),
            }
        } else {
            errors.push(syn::Error::new_spanned(
                attr,
                "unknown attribute; defdspy! understands doc comments and `#[python = \"...\"]`",
            ));
        }
    }
    found
}

fn docs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("doc")).collect()
}

/// Whether `ty` is `S::<assoc>` for the wrapper's signature parameter `S`.
fn is_signature_assoc(ty: &Type, signature: Option<&Ident>, assoc: &str) -> bool {
    let (Some(signature), Type::Path(path)) = (signature, ty) else {
        return false;
    };
    let segments: Vec<_> = path.path.segments.iter().collect();
    path.qself.is_none()
        && segments.len() == 2
        && segments[0].ident == *signature
        && segments[1].ident == assoc
}

/// Parse, then validate (every problem collected), then expand (quoting only).
pub(crate) fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let wrapper: Wrapper = syn::parse2(input)?;
    let mut errors = Vec::new();
    let class_path = validate(&wrapper, &mut errors);
    if let Err(error) = combine(errors) {
        // The declared struct still exists (without its methods), so a mistake is reported here
        // once, not again wherever the type is named.
        let kept = declared_struct(&wrapper);
        let error = error.into_compile_error();
        return Ok(quote! {
            #kept
            #error
        });
    }
    let signature = wrapper.generics.type_params().next().map(|p| &p.ident);
    Ok(quote_wrapper(
        &wrapper,
        &class_path.expect("checked"),
        signature,
    ))
}

/// The struct a declaration names, with its signature parameter when it has a valid one.
fn declared_struct(wrapper: &Wrapper) -> TokenStream {
    let (vis, ident) = (&wrapper.vis, &wrapper.ident);
    let params: Vec<&Ident> = wrapper.generics.type_params().map(|p| &p.ident).collect();
    if params.len() == 1 && wrapper.generics.params.len() == 1 {
        let param = params[0];
        quote! {
            #[allow(dead_code)]
            #vis struct #ident<#param>(::core::marker::PhantomData<fn() -> #param>);
        }
    } else {
        quote! {
            #[allow(dead_code)]
            #vis struct #ident;
        }
    }
}

/// Every check of a declaration; problems go to `errors`. The class's dotted path, when given.
fn validate(wrapper: &Wrapper, errors: &mut Vec<syn::Error>) -> Option<LitStr> {
    let class_path = python_name(&wrapper.attrs, errors);
    match &class_path {
        None => errors.push(syn::Error::new_spanned(
            &wrapper.ident,
            "name the Python class: put `#[python = \"module.Class\"]` above the struct",
        )),
        Some(path) if !path.value().contains('.') || path.value().ends_with('.') => {
            errors.push(syn::Error::new_spanned(
                path,
                "give the class's dotted path, like \"dspy.MultiChainComparison\"",
            ))
        }
        Some(_) => {}
    }
    let type_params: Vec<&syn::TypeParam> = wrapper.generics.type_params().collect();
    if type_params.len() > 1
        || wrapper.generics.lifetimes().next().is_some()
        || wrapper.generics.const_params().next().is_some()
    {
        errors.push(syn::Error::new_spanned(
            &wrapper.generics,
            "a wrapper takes at most one generic parameter: its signature, as in `struct Name<S>`",
        ));
    }
    let signature = type_params.first().map(|p| &p.ident);
    let mut seen = std::collections::HashSet::new();
    for method in &wrapper.methods {
        let name = method.ident.to_string();
        if let Some(renamed) = python_name(&method.attrs, errors)
            && name == "new"
        {
            errors.push(syn::Error::new_spanned(
                renamed,
                "the constructor has no Python name of its own (the class is the struct's `#[python = ...]`); \
                 to rename an argument, put the attribute on it: `fn new(#[python = \"M\"] m: i64)`",
            ));
        }
        if !seen.insert(name.clone()) {
            errors.push(syn::Error::new_spanned(
                &method.ident,
                format!("`{name}` is declared twice"),
            ));
        }
        if matches!(name.as_str(), "create" | "execute" | "object") {
            errors.push(syn::Error::new_spanned(
                &method.ident,
                format!("`{name}` is generated by defdspy!; declare the constructor as `fn new(...)` and the runner as `fn call(...)`"),
            ));
        }
        if let (true, Some(output)) = (name == "new", &method.output) {
            errors.push(syn::Error::new_spanned(
                output,
                "the constructor returns the wrapper; remove the return type",
            ));
        }
        for arg in &method.args {
            let renamed = python_name(&arg.attrs, errors);
            if is_signature_assoc(&arg.ty, signature, "Input") {
                if let Some(renamed) = renamed {
                    errors.push(syn::Error::new_spanned(
                        renamed,
                        "an `S::Input` argument is spread into the signature's own field names; \
                         it has no Python name to set",
                    ));
                }
            } else {
                if let Some(renamed) = &renamed
                    && !is_python_identifier(&renamed.value())
                {
                    errors.push(syn::Error::new_spanned(
                        renamed,
                        "a keyword argument's Python name must be an identifier, like \"M\" or \"max_iters\"",
                    ));
                }
                types::check(&arg.ty, errors);
            }
        }
        if let Some(output) = &method.output
            && !is_signature_assoc(output, signature, "Output")
        {
            types::check(output, errors);
        }
    }
    class_path
}

fn kwargs(args: &[Arg], signature: Option<&Ident>) -> TokenStream {
    let inserts = args.iter().map(|arg| {
        let (ident, ty) = (&arg.ident, &arg.ty);
        if is_signature_assoc(ty, signature, "Input") {
            quote! { kwargs.extend(::dspex::SignatureInput::to_inputs(&#ident)); }
        } else {
            let mut ignored = Vec::new();
            let key = python_name(&arg.attrs, &mut ignored)
                .map_or_else(|| ident.unraw().to_string(), |name| name.value());
            quote! {
                kwargs.insert(::std::string::String::from(#key), <#ty as ::dspex::DspyType>::to_value(&#ident));
            }
        }
    });
    quote! {
        #[allow(unused_mut)]
        let mut kwargs = ::dspex::__private::Map::new();
        #(#inserts)*
    }
}

fn quote_wrapper(wrapper: &Wrapper, class_path: &LitStr, signature: Option<&Ident>) -> TokenStream {
    let Wrapper {
        attrs,
        vis,
        ident,
        generics,
        methods,
    } = wrapper;
    let struct_docs = docs(attrs);
    let (params, phantom, phantom_init, spec) = match signature {
        Some(s) => (
            quote!(<#s: ::dspex::Signature>),
            quote!(_signature: ::core::marker::PhantomData<fn() -> #s>,),
            quote!(_signature: ::core::marker::PhantomData,),
            quote!(::core::option::Option::Some(<#s as ::dspex::Signature>::spec())),
        ),
        None => (
            quote!(),
            quote!(),
            quote!(),
            quote!(::core::option::Option::None),
        ),
    };
    let use_params = match signature {
        Some(s) => quote!(<#s>),
        None => quote!(),
    };
    let _ = generics;
    let constructor = methods.iter().find(|m| m.ident == "new");
    let (ctor_docs, ctor_params, ctor_kwargs) = match constructor {
        Some(m) => {
            let params = m.args.iter().map(|a| {
                let (i, t) = (&a.ident, &a.ty);
                quote!(#i: #t)
            });
            (
                docs(&m.attrs),
                quote!(#(, #params)*),
                kwargs(&m.args, signature),
            )
        }
        None => (Vec::new(), quote!(), kwargs(&[], signature)),
    };
    let create_doc = format!(
        "Creates `{}` in a new session of `dspex`.",
        class_path.value()
    );
    let mut fns = Vec::new();
    for method in methods.iter().filter(|m| m.ident != "new") {
        let mut ignored = Vec::new();
        let python = python_name(&method.attrs, &mut ignored)
            .map(|s| s.value())
            .unwrap_or_else(|| {
                if method.ident == "call" {
                    "__call__".to_owned()
                } else {
                    method.ident.unraw().to_string()
                }
            });
        let method_docs = docs(&method.attrs);
        let params: Vec<TokenStream> = method
            .args
            .iter()
            .map(|a| {
                let (i, t) = (&a.ident, &a.ty);
                quote!(#i: #t)
            })
            .collect();
        let build = kwargs(&method.args, signature);
        let (ret, body) = match &method.output {
            None => (
                quote!(()),
                quote!(::dspex::__private::call_method_unit(&self.object, #python, kwargs).await),
            ),
            Some(ty) if is_signature_assoc(ty, signature, "Output") => {
                let s = signature.expect("checked");
                (
                    quote!(#ty),
                    quote!(::dspex::__private::call_method_for::<#s>(&self.object, #python, kwargs).await),
                )
            }
            Some(ty) => (
                quote!(#ty),
                quote!(::dspex::__private::call_method::<#ty>(&self.object, #python, kwargs).await),
            ),
        };
        let names: Vec<Ident> = if method.ident == "call" {
            vec![format_ident!("call"), format_ident!("execute")]
        } else {
            vec![method.ident.clone()]
        };
        for name in names {
            let doc = if name == "execute" {
                vec![quote!(#[doc = "The same as `call`."])]
            } else {
                method_docs.iter().map(|d| quote!(#d)).collect()
            };
            fns.push(quote! {
                #(#doc)*
                #vis async fn #name(&self #(, #params)*) -> ::dspex::Result<#ret> {
                    #build
                    #body
                }
            });
        }
    }
    quote! {
        #(#struct_docs)*
        #vis struct #ident #params {
            object: ::dspex::ObjectModule,
            #phantom
        }

        impl #params ::core::fmt::Debug for #ident #use_params {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(::core::stringify!(#ident))
                    .field("object", &self.object)
                    .finish()
            }
        }

        impl #params #ident #use_params {
            #[doc = #create_doc]
            #(#ctor_docs)*
            #vis async fn create(dspex: &::dspex::Dspex #ctor_params) -> ::dspex::Result<Self> {
                #ctor_kwargs
                let object = ::dspex::__private::create_object(dspex, #class_path, #spec, kwargs).await?;
                ::core::result::Result::Ok(Self { object, #phantom_init })
            }

            /// The Python object, for calls the wrapper does not declare.
            #vis fn object(&self) -> &::dspex::ObjectModule {
                &self.object
            }

            #(#fns)*
        }
    }
}

/// Whether `name` can be a Python keyword argument's name.
fn is_python_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}
