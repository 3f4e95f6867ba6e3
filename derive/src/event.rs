//! `#[derive(DomainEvent)]`: parse → validate → expand.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, LitInt, LitStr};

use crate::Errors;

/// What `#[event(...)]` said.
#[derive(Default)]
struct EventAttrs {
    name: Option<LitStr>,
    version: Option<(u32, Span)>,
}

/// One event type: a variant, or the whole struct.
struct EventType {
    ident: Ident,
    fields: Option<Fields>,
    attrs: EventAttrs,
}

impl EventType {
    fn name(&self) -> String {
        self.attrs
            .name
            .as_ref()
            .map_or_else(|| self.ident.to_string(), LitStr::value)
    }
    fn name_span(&self) -> Span {
        self.attrs
            .name
            .as_ref()
            .map_or_else(|| self.ident.span(), LitStr::span)
    }
    fn version(&self) -> u32 {
        self.attrs.version.map_or(1, |(v, _)| v)
    }
}

/// Parses `#[event(name = "...", version = N)]` attributes, reporting each bad key or value.
fn parse_attrs(attrs: &[Attribute], errors: &mut Errors) -> EventAttrs {
    let mut out = EventAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
        let r = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().is_empty() || lit.value().len() > 255 {
                    errors.push(syn::Error::new(
                        lit.span(),
                        "event name must be 1 to 255 bytes long",
                    ));
                } else if out.name.is_some() {
                    errors.push(syn::Error::new(lit.span(), "duplicate `name`"));
                } else {
                    out.name = Some(lit);
                }
                Ok(())
            } else if meta.path.is_ident("version") {
                let lit: LitInt = meta.value()?.parse()?;
                match lit.base10_parse::<u32>() {
                    Ok(0) | Err(_) => errors.push(syn::Error::new(
                        lit.span(),
                        "event version must be an integer from 1 to 4294967295",
                    )),
                    Ok(_) if out.version.is_some() => {
                        errors.push(syn::Error::new(lit.span(), "duplicate `version`"));
                    }
                    Ok(v) => out.version = Some((v, lit.span())),
                }
                Ok(())
            } else {
                Err(meta
                    .error("unknown event attribute; expected `name = \"...\"` or `version = N`"))
            }
        });
        if let Err(e) = r {
            errors.push(e);
        }
    }
    out
}

/// Stage 1: the model of the input.
fn parse(input: &DeriveInput, errors: &mut Errors) -> Vec<EventType> {
    match &input.data {
        Data::Enum(data) => {
            if let Some(attr) = input.attrs.iter().find(|a| a.path().is_ident("event")) {
                errors.push(syn::Error::new(
                    attr.span(),
                    "on an enum, put `#[event(...)]` on its variants",
                ));
            }
            data.variants
                .iter()
                .map(|v| EventType {
                    ident: v.ident.clone(),
                    fields: Some(v.fields.clone()),
                    attrs: parse_attrs(&v.attrs, errors),
                })
                .collect()
        }
        Data::Struct(_) => vec![EventType {
            ident: input.ident.clone(),
            fields: None,
            attrs: parse_attrs(&input.attrs, errors),
        }],
        Data::Union(u) => {
            errors.push(syn::Error::new(
                u.union_token.span(),
                "DomainEvent cannot be derived for a union",
            ));
            Vec::new()
        }
    }
}

/// Stage 2: rules across the model.
fn validate(input: &DeriveInput, types: &[EventType], errors: &mut Errors) {
    if !input.generics.params.is_empty() {
        errors.push(syn::Error::new(
            input.generics.span(),
            "DomainEvent cannot be derived for a generic type",
        ));
    }
    if let Data::Enum(data) = &input.data
        && data.variants.is_empty()
    {
        errors.push(syn::Error::new(
            input.ident.span(),
            "an event enum needs at least one variant",
        ));
    }
    let mut seen: HashMap<String, &Ident> = HashMap::new();
    for t in types {
        let name = t.name();
        if let Some(first) = seen.get(&name) {
            errors.push(syn::Error::new(
                t.name_span(),
                format!("duplicate event name {name:?} (also used by `{first}`)"),
            ));
        } else {
            seen.insert(name, &t.ident);
        }
    }
}

/// Stage 3: the code.
fn expand(input: &DeriveInput, types: &[EventType]) -> TokenStream {
    let p = quote!(::annals::__private);
    let ty = &input.ident;
    let names: Vec<String> = types.iter().map(EventType::name).collect();
    let versions: Vec<u32> = types.iter().map(EventType::version).collect();
    let table = quote! { &[#((#names, #versions)),*] };

    let body = if let Data::Enum(_) = &input.data {
        let mut helpers = Vec::new();
        let mut type_arms = Vec::new();
        let mut version_arms = Vec::new();
        let mut encode_arms = Vec::new();
        let mut decode_arms = Vec::new();
        for t in types {
            let v = &t.ident;
            let name = t.name();
            let version = t.version();
            let refs = format_ident!("__AnnalsRef{}", v);
            let owned = format_ident!("__AnnalsOwned{}", v);
            let serde_crate = quote!(#[serde(crate = "::annals::__private::serde")]);
            match t.fields.as_ref() {
                Some(Fields::Named(named)) => {
                    let idents: Vec<&Ident> = named
                        .named
                        .iter()
                        .filter_map(|f| f.ident.as_ref())
                        .collect();
                    let tys: Vec<&syn::Type> = named.named.iter().map(|f| &f.ty).collect();
                    helpers.push(quote! {
                        #[derive(#p::serde::Serialize)] #serde_crate
                        struct #refs<'__a> { #(#idents: &'__a #tys),* }
                        #[derive(#p::serde::Deserialize)] #serde_crate
                        struct #owned { #(#idents: #tys),* }
                    });
                    type_arms.push(quote!(Self::#v { .. } => #name));
                    version_arms.push(quote!(Self::#v { .. } => #version));
                    encode_arms.push(quote!(Self::#v { #(#idents),* } => codec.encode(#name, &#refs { #(#idents),* })));
                    decode_arms.push(quote! {
                        #name => {
                            let o: #owned = codec.decode(event_type, bytes)?;
                            ::core::result::Result::Ok(Self::#v { #(#idents: o.#idents),* })
                        }
                    });
                }
                Some(Fields::Unnamed(unnamed)) => {
                    let tys: Vec<&syn::Type> = unnamed.unnamed.iter().map(|f| &f.ty).collect();
                    let binds: Vec<Ident> =
                        (0..tys.len()).map(|i| format_ident!("__f{}", i)).collect();
                    let idx = (0..tys.len()).map(syn::Index::from);
                    helpers.push(quote! {
                        #[derive(#p::serde::Serialize)] #serde_crate
                        struct #refs<'__a>(#(&'__a #tys),*);
                        #[derive(#p::serde::Deserialize)] #serde_crate
                        struct #owned(#(#tys),*);
                    });
                    type_arms.push(quote!(Self::#v(..) => #name));
                    version_arms.push(quote!(Self::#v(..) => #version));
                    encode_arms.push(
                        quote!(Self::#v(#(#binds),*) => codec.encode(#name, &#refs(#(#binds),*))),
                    );
                    decode_arms.push(quote! {
                        #name => {
                            let o: #owned = codec.decode(event_type, bytes)?;
                            ::core::result::Result::Ok(Self::#v(#(o.#idx),*))
                        }
                    });
                }
                _ => {
                    type_arms.push(quote!(Self::#v => #name));
                    version_arms.push(quote!(Self::#v => #version));
                    encode_arms.push(quote!(Self::#v => codec.encode(#name, &())));
                    decode_arms.push(quote! {
                        #name => {
                            let () = codec.decode(event_type, bytes)?;
                            ::core::result::Result::Ok(Self::#v)
                        }
                    });
                }
            }
        }
        let ty_name = ty.to_string();
        quote! {
            #(#helpers)*
            #[automatically_derived]
            impl #p::DomainEvent for #ty {
                fn event_type(&self) -> &'static str {
                    match self { #(#type_arms,)* }
                }
                fn schema_version(&self) -> u32 {
                    match self { #(#version_arms,)* }
                }
                fn event_types() -> &'static [(&'static str, u32)] {
                    #table
                }
                fn encode_payload(&self, codec: #p::CodecId) -> ::core::result::Result<::std::vec::Vec<u8>, #p::Error> {
                    match self { #(#encode_arms,)* }
                }
                fn decode_payload(event_type: &str, codec: #p::CodecId, bytes: &[u8]) -> ::core::result::Result<Self, #p::Error> {
                    match event_type {
                        #(#decode_arms)*
                        other => ::core::result::Result::Err(#p::unknown_event_type(other, #ty_name)),
                    }
                }
            }
        }
    } else {
        let name = &names[0];
        let version = versions[0];
        let span = input.ident.span();
        quote_spanned! {span=>
            #[automatically_derived]
            impl #p::DomainEvent for #ty {
                fn event_type(&self) -> &'static str { #name }
                fn schema_version(&self) -> u32 { #version }
                fn event_types() -> &'static [(&'static str, u32)] { #table }
                fn encode_payload(&self, codec: #p::CodecId) -> ::core::result::Result<::std::vec::Vec<u8>, #p::Error> {
                    codec.encode(#name, self)
                }
                fn decode_payload(event_type: &str, codec: #p::CodecId, bytes: &[u8]) -> ::core::result::Result<Self, #p::Error> {
                    if event_type != #name {
                        return ::core::result::Result::Err(#p::unknown_event_type(event_type, #name));
                    }
                    codec.decode(event_type, bytes)
                }
            }
        }
    };
    quote! {
        #[allow(non_camel_case_types, clippy::all)]
        const _: () = { #body };
    }
}

pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let types = parse(input, &mut errors);
    validate(input, &types, &mut errors);
    errors.finish()?;
    Ok(expand(input, &types))
}
