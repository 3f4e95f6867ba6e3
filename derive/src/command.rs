//! `#[derive(Command)]`: parse → validate → expand.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Member};

use crate::Errors;

/// One shape that needs an id field: the struct, or one enum variant.
struct Shape {
    /// `None` for the struct itself.
    variant: Option<Ident>,
    span: Span,
    fields: Fields,
    /// The fields marked `#[command(id)]`, with the attribute's span.
    ids: Vec<(Member, Span)>,
}

fn parse_shape(variant: Option<Ident>, span: Span, fields: &Fields, errors: &mut Errors) -> Shape {
    let mut ids = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("command")) {
            let mut id_span = None;
            let r = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("id") {
                    id_span = Some(meta.path.span());
                    Ok(())
                } else {
                    Err(meta.error("unknown command attribute; expected `id`"))
                }
            });
            match r {
                Err(e) => errors.push(e),
                Ok(()) => match id_span {
                    Some(span) => {
                        let member = field
                            .ident
                            .clone()
                            .map_or_else(|| Member::Unnamed(syn::Index::from(i)), Member::Named);
                        ids.push((member, span));
                    }
                    None => errors.push(syn::Error::new(
                        attr.meta.span(),
                        "expected `#[command(id)]`",
                    )),
                },
            }
        }
    }
    Shape {
        variant,
        span,
        fields: fields.clone(),
        ids,
    }
}

fn parse(input: &DeriveInput, errors: &mut Errors) -> Vec<Shape> {
    match &input.data {
        Data::Struct(s) => vec![parse_shape(None, input.ident.span(), &s.fields, errors)],
        Data::Enum(e) => e
            .variants
            .iter()
            .map(|v| parse_shape(Some(v.ident.clone()), v.ident.span(), &v.fields, errors))
            .collect(),
        Data::Union(u) => {
            errors.push(syn::Error::new(
                u.union_token.span(),
                "Command cannot be derived for a union",
            ));
            Vec::new()
        }
    }
}

fn validate(shapes: &[Shape], errors: &mut Errors) {
    for shape in shapes {
        match shape.ids.as_slice() {
            [] => errors.push(syn::Error::new(
                shape.span,
                "missing `#[command(id)]`: mark the field that holds the target aggregate's id",
            )),
            [_] => {}
            [_, rest @ ..] => {
                for (_, span) in rest {
                    errors.push(syn::Error::new(
                        *span,
                        "only one field can be `#[command(id)]`",
                    ));
                }
            }
        }
    }
}

fn expand(input: &DeriveInput, shapes: &[Shape]) -> TokenStream {
    let p = quote!(::annals::__private);
    let ty = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let body = if matches!(input.data, Data::Struct(_)) {
        let member = &shapes[0].ids[0].0;
        quote!(::std::string::ToString::to_string(&self.#member))
    } else {
        let arms = shapes.iter().map(|s| {
            let v = s.variant.as_ref();
            let member = &s.ids[0].0;
            match (&s.fields, member) {
                (Fields::Named(_), Member::Named(name)) => {
                    quote!(Self::#v { #name, .. } => ::std::string::ToString::to_string(#name))
                }
                (_, Member::Unnamed(index)) => {
                    let pats = (0..s.fields.len()).map(|i| {
                        if i == index.index as usize {
                            quote!(__id)
                        } else {
                            quote!(_)
                        }
                    });
                    quote!(Self::#v(#(#pats),*) => ::std::string::ToString::to_string(__id))
                }
                _ => quote!(Self::#v { .. } => ::std::string::String::new()),
            }
        });
        quote!(match self { #(#arms,)* })
    };
    quote! {
        #[automatically_derived]
        impl #impl_generics #p::Command for #ty #ty_generics #where_clause {
            fn aggregate_id(&self) -> ::std::string::String {
                #body
            }
        }
    }
}

pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let shapes = parse(input, &mut errors);
    validate(&shapes, &mut errors);
    errors.finish()?;
    Ok(expand(input, &shapes))
}
