//! # annals-derive
//!
//! Derive macros of annals, used through the facade (`annals::DomainEvent`,
//! `annals::Command`). Each macro works in three stages — *parse* the input into a small
//! model, *validate* the model (collecting every error, each spanned on the offending token),
//! *expand* into code that names only paths of the facade's hidden `annals::__private`
//! module — so a misuse gets all its errors at once, where they are.
//!
//! What the derives accept and produce is shown, running, in the facade's documentation
//! (`annals::DomainEvent`, `annals::Command`); the `trybuild` cases in `tests/ui/` show every
//! error with its span.

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

mod command;
mod event;

/// Implements `annals::DomainEvent` for an enum (one event type per variant, payload = the
/// variant's fields) or a struct (one event type; the struct must implement serde's
/// `Serialize` and `Deserialize`).
///
/// Attributes, on a variant or on the struct: `#[event(name = "TypeName")]` (default: the
/// variant or struct name) and `#[event(version = N)]` (the schema version written, N ≥ 1,
/// default 1). Field types of enum variants must implement `Serialize` and `Deserialize`.
///
/// On the enum or the struct, `#[event(schemas)]` also implements
/// `annals::contracts::EventContracts` (the facade's `contracts` feature): one JSON Schema
/// per event type, at its version. A variant's schema describes its payload exactly as
/// written — named fields as an object, one unnamed field as that field's value, several as
/// an array, none as `null` — so its field types must implement `schemars::JsonSchema`; a
/// struct must implement `JsonSchema` itself. Doc comments of variants and fields become
/// the schemas' descriptions.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `annals::Command`: mark the field holding the target aggregate's id with
/// `#[command(id)]` (exactly one per struct, or per variant of an enum). Its value becomes the
/// aggregate id through `ToString`.
#[proc_macro_derive(Command, attributes(command))]
pub fn derive_command(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    command::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Collects errors so that all of them are reported at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
