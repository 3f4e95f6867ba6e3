//! # annals-derive
//!
//! Procedural macros of annals (`#[derive(DomainEvent)]`, `#[derive(Command)]`). The crate is
//! a skeleton so far; the macros are built in stages (parse → validate → expand) and generate
//! code naming only paths of the `annals` facade's hidden support module.
