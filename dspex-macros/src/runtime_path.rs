//! Where generated code finds the `dspex` crate: `::dspex`, or the name the user's `Cargo.toml`
//! gives it (`my_dspex = { package = "dspex", ... }`). Expansion code writes `::dspex::...`; this
//! module rewrites those paths once, at the end, when the crate is renamed.

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Group, Ident, Literal, TokenStream, TokenTree};

/// The user's name for `dspex` when it differs from `dspex`.
fn renamed() -> Option<String> {
    match crate_name("dspex") {
        Ok(FoundCrate::Name(name)) if name != "dspex" => Some(name),
        // `Itself` (dspex's own examples and tests) and "not found" both keep `::dspex`.
        _ => None,
    }
}

/// The path of the `dspex` crate as the user's code names it, for paths that generated code must
/// write inside strings (`"::dspex"`, or `"::my_dspex"` when renamed).
pub(crate) fn crate_path() -> String {
    format!("::{}", renamed().as_deref().unwrap_or("dspex"))
}

/// `tokens` with every leading `::dspex` path segment renamed to the user's name for the crate.
pub(crate) fn resolve(tokens: TokenStream) -> TokenStream {
    match renamed() {
        Some(name) => rename(tokens, &name),
        None => tokens,
    }
}

/// Keywords after which `::dspex` starts a path (`<T as ::dspex::DspyType>`, `impl ::dspex::X`).
const BEFORE_A_PATH: &[&str] = &[
    "as", "impl", "for", "dyn", "where", "in", "return", "let", "mut", "move", "else",
];

fn rename(tokens: TokenStream, name: &str) -> TokenStream {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(trees.len());
    for (i, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Group(group) => {
                let mut renamed = Group::new(group.delimiter(), rename(group.stream(), name));
                renamed.set_span(group.span());
                out.push(TokenTree::Group(renamed));
            }
            TokenTree::Ident(ident) if ident == "dspex" && starts_path(&trees, i) => {
                out.push(TokenTree::Ident(Ident::new(name, ident.span())));
            }
            // Paths in strings: `#[serde(crate = "::dspex::__private::serde")]`.
            TokenTree::Literal(literal) if literal.to_string().starts_with("\"::dspex::") => {
                let text = literal.to_string();
                let path = &text[1..text.len() - 1];
                let mut renamed =
                    Literal::string(&path.replacen("::dspex::", &format!("::{name}::"), 1));
                renamed.set_span(literal.span());
                out.push(TokenTree::Literal(renamed));
            }
            other => out.push(other.clone()),
        }
    }
    out.into_iter().collect()
}

/// Whether the ident at `i` follows a `::` that begins a path (not `a::dspex` or `(x)::dspex`).
fn starts_path(trees: &[TokenTree], i: usize) -> bool {
    let colon =
        |t: Option<&TokenTree>| matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == ':');
    if i < 2 || !colon(trees.get(i - 1)) || !colon(trees.get(i - 2)) {
        return false;
    }
    match i.checked_sub(3).and_then(|j| trees.get(j)) {
        // A keyword, or a lifetime (`&'static ::dspex::X`).
        Some(TokenTree::Ident(before)) => {
            BEFORE_A_PATH.iter().any(|k| before == k)
                || matches!(i.checked_sub(4).and_then(|j| trees.get(j)), Some(TokenTree::Punct(p)) if p.as_char() == '\'')
        }
        Some(TokenTree::Group(_)) => false,
        // `-> ::dspex`, `= ::dspex`, `(::dspex` ... (generated code never writes `T>::dspex`).
        Some(TokenTree::Punct(_)) => true,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn leading_paths_are_renamed_and_others_kept() {
        let tokens = quote! {
            impl ::dspex::Signature for A { fn f() -> ::dspex::Result<<B as ::dspex::DspyType>::X> { my::dspex::y() } }
            const _: ::dspex::__private::Map = (::dspex::new());
            fn g() -> &'static ::dspex::Spec {}
            #[serde(crate = "::dspex::__private::serde")]
        };
        let out = rename(tokens, "renamed").to_string();
        assert!(!out.contains(":: dspex :: Signature"), "{out}");
        assert!(out.contains(":: renamed :: Signature"), "{out}");
        assert!(out.contains("as :: renamed :: DspyType"), "{out}");
        assert!(
            out.contains("my :: dspex :: y"),
            "a path inside another is kept: {out}"
        );
        assert!(out.contains("(:: renamed :: new ())"), "{out}");
        assert!(out.contains("-> :: renamed :: Result"), "{out}");
        assert!(out.contains("'static :: renamed :: Spec"), "{out}");
        assert!(out.contains(r#""::renamed::__private::serde""#), "{out}");
        assert!(out.contains(": :: renamed :: __private :: Map"), "{out}");
    }
}
