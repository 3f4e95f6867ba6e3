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
    /// `schemas`: also implement `EventContracts` (on the enum or the struct).
    schemas: Option<Span>,
}

/// Where an `#[event(...)]` attribute is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// On an event enum itself: only `schemas`.
    Enum,
    /// On a variant: `name` and `version`.
    Variant,
    /// On an event struct: all three.
    Struct,
}

/// The model of the input.
struct Model {
    types: Vec<EventType>,
    /// `#[event(schemas)]` on the enum or the struct.
    schemas: Option<Span>,
}

/// One event type: a variant, or the whole struct.
struct EventType {
    ident: Ident,
    fields: Option<Fields>,
    /// A variant's documentation (for its schema).
    docs: Vec<Attribute>,
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

/// Parses `#[event(name = "...", version = N, schemas)]` attributes, reporting each bad key
/// or value, and each key out of its place.
fn parse_attrs(attrs: &[Attribute], place: Place, errors: &mut Errors) -> EventAttrs {
    let mut out = EventAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
        let r = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if place == Place::Enum {
                    errors.push(syn::Error::new(
                        meta.path.span(),
                        "on an enum, put `name` on its variants",
                    ));
                } else if lit.value().is_empty() || lit.value().len() > 255 {
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
                    _ if place == Place::Enum => errors.push(syn::Error::new(
                        meta.path.span(),
                        "on an enum, put `version` on its variants",
                    )),
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
            } else if meta.path.is_ident("schemas") {
                let span = meta.path.span();
                if meta.input.peek(syn::Token![=]) {
                    // Read the value so that the rest of the attribute still parses.
                    let _: syn::Expr = meta.value()?.parse()?;
                    errors.push(syn::Error::new(span, "`schemas` takes no value"));
                } else if place == Place::Variant {
                    errors.push(syn::Error::new(
                        span,
                        "`schemas` goes on the enum, not on a variant: `#[event(schemas)]` above \
                         the `enum`",
                    ));
                } else if out.schemas.is_some() {
                    errors.push(syn::Error::new(span, "duplicate `schemas`"));
                } else {
                    out.schemas = Some(span);
                }
                Ok(())
            } else {
                Err(meta.error(
                    "unknown event attribute; expected `name = \"...\"`, `version = N` or `schemas`",
                ))
            }
        });
        if let Err(e) = r {
            errors.push(e);
        }
    }
    out
}

/// Stage 1: the model of the input.
fn parse(input: &DeriveInput, errors: &mut Errors) -> Model {
    match &input.data {
        Data::Enum(data) => {
            let container = parse_attrs(&input.attrs, Place::Enum, errors);
            let types = data
                .variants
                .iter()
                .map(|v| EventType {
                    ident: v.ident.clone(),
                    fields: Some(v.fields.clone()),
                    docs: docs(&v.attrs),
                    attrs: parse_attrs(&v.attrs, Place::Variant, errors),
                })
                .collect();
            Model {
                types,
                schemas: container.schemas,
            }
        }
        Data::Struct(_) => {
            let attrs = parse_attrs(&input.attrs, Place::Struct, errors);
            let schemas = attrs.schemas;
            Model {
                types: vec![EventType {
                    ident: input.ident.clone(),
                    fields: None,
                    docs: Vec::new(),
                    attrs,
                }],
                schemas,
            }
        }
        Data::Union(u) => {
            errors.push(syn::Error::new(
                u.union_token.span(),
                "DomainEvent cannot be derived for a union",
            ));
            Model {
                types: Vec::new(),
                schemas: None,
            }
        }
    }
}

/// The `#[doc]` attributes of an item: the schema's descriptions.
fn docs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect()
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
    let model = parse(input, &mut errors);
    validate(input, &model.types, &mut errors);
    errors.finish()?;
    let mut out = expand(input, &model.types);
    if let Some(span) = model.schemas {
        out.extend(expand_schemas(input, &model.types, span));
    }
    Ok(out)
}

/// Stage 3, with `#[event(schemas)]`: `EventContracts`, one schema per event type. An enum
/// variant's schema is that of a struct with the variant's fields — exactly what the
/// payload helper above serializes: named fields as an object, one unnamed field as that
/// field's value, several as an array, none as `null`. A struct's is its own `JsonSchema`.
/// Everything is inside `with_contracts!`, which is a clear error without the facade's
/// `contracts` feature.
fn expand_schemas(input: &DeriveInput, types: &[EventType], span: Span) -> TokenStream {
    let p = quote!(::annals::__private);
    let ty = &input.ident;
    let schemars_crate = quote!(#[schemars(crate = "::annals::__private::schemars")]);
    let mut helpers = Vec::new();
    let mut entries = Vec::new();
    for t in types {
        let name = t.name();
        let version = t.version();
        let Some(fields) = &t.fields else {
            let span = input.ident.span();
            entries.push(quote_spanned! {span=>
                #p::contracts::EventSchema::new(#name, #version, #p::contracts::schema_of::<#ty>())
            });
            continue;
        };
        let helper = format_ident!("__AnnalsSchema{}", t.ident);
        // The schema's name (and root title) is the event type's; braces are format syntax
        // to schemars' `rename`.
        let rename = name.replace('{', "{{").replace('}', "}}");
        let docs = &t.docs;
        let body = match fields {
            Fields::Named(named) => {
                let fields = named.named.iter().map(|f| {
                    let (ident, ty, docs) = (&f.ident, &f.ty, docs_of(&f.attrs));
                    quote!(#(#docs)* #ident: #ty)
                });
                quote!({ #(#fields),* })
            }
            Fields::Unnamed(unnamed) => {
                let fields = unnamed.unnamed.iter().map(|f| {
                    let (ty, docs) = (&f.ty, docs_of(&f.attrs));
                    quote!(#(#docs)* #ty)
                });
                quote!((#(#fields),*);)
            }
            Fields::Unit => quote!(;),
        };
        helpers.push(quote! {
            #[derive(#p::schemars::JsonSchema)]
            #schemars_crate
            #[schemars(rename = #rename)]
            #(#docs)*
            struct #helper #body
        });
        entries.push(quote! {
            #p::contracts::EventSchema::new(#name, #version, #p::contracts::schema_of::<#helper>())
        });
    }
    let invoke = quote_spanned!(span=> #p::with_contracts!);
    quote! {
        #invoke {
            #[allow(non_camel_case_types, dead_code, missing_docs, clippy::all)]
            const _: () = {
                #(#helpers)*
                #[automatically_derived]
                impl #p::contracts::EventContracts for #ty {
                    fn event_schemas() -> ::std::vec::Vec<#p::contracts::EventSchema> {
                        ::std::vec![#(#entries),*]
                    }
                }
            };
        }
    }
}

fn docs_of(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("doc")).collect()
}
