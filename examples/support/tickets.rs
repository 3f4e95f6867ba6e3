//! Support tickets as a search read model: the projector shared by the search tests, the
//! benches and the REPL.
#![allow(dead_code, unreachable_pub)]

use annals::RecordedEvent;
use annals::projections::tantivy::TantivyDocument;
use annals::projections::tantivy::schema::{FAST, INDEXED, STORED, STRING, Schema, TEXT, Value};
use annals::projections::{CurrentDoc, SearchOp, SearchProjector};
use serde::{Deserialize, Serialize};

/// Ticket events as stored (JSON payloads).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum TicketEvent {
    /// A ticket was opened.
    Opened {
        ticket: String,
        title: String,
        body: String,
        priority: u64,
    },
    /// Someone commented.
    Commented { ticket: String, text: String },
    /// It was closed.
    Closed { ticket: String },
    /// It was removed.
    Deleted { ticket: String },
}

impl TicketEvent {
    /// The event type name.
    pub fn name(&self) -> &'static str {
        match self {
            TicketEvent::Opened { .. } => "Opened",
            TicketEvent::Commented { .. } => "Commented",
            TicketEvent::Closed { .. } => "Closed",
            TicketEvent::Deleted { .. } => "Deleted",
        }
    }

    /// As event data (JSON).
    pub fn data(&self) -> annals::EventData {
        annals::EventData::json(self.name(), self)
            .unwrap_or_else(|e| unreachable!("serializable: {e}"))
    }
}

/// Indexes tickets: title and body (with comments) searchable, status and priority filterable.
pub struct TicketSearch {
    pub name: &'static str,
    pub version: u32,
}

impl Default for TicketSearch {
    fn default() -> Self {
        Self {
            name: "ticket-search",
            version: 1,
        }
    }
}

fn text(doc: &TantivyDocument, schema: &Schema, name: &str) -> String {
    schema
        .get_field(name)
        .ok()
        .and_then(|f| doc.get_first(f).and_then(|v| v.as_str().map(str::to_owned)))
        .unwrap_or_default()
}

fn number(doc: &TantivyDocument, schema: &Schema, name: &str) -> u64 {
    schema
        .get_field(name)
        .ok()
        .and_then(|f| doc.get_first(f).and_then(|v| v.as_u64()))
        .unwrap_or(0)
}

impl TicketSearch {
    fn doc(
        &self,
        title: &str,
        body: &str,
        status: &str,
        priority: u64,
    ) -> Result<TantivyDocument, String> {
        let schema = self.schema();
        let field = |n: &str| schema.get_field(n).map_err(|e| e.to_string());
        let mut doc = TantivyDocument::default();
        doc.add_text(field("title")?, title);
        doc.add_text(field("body")?, body);
        doc.add_text(field("status")?, status);
        doc.add_u64(field("priority")?, priority);
        Ok(doc)
    }
}

impl SearchProjector for TicketSearch {
    fn name(&self) -> &str {
        self.name
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn schema(&self) -> Schema {
        let mut b = Schema::builder();
        b.add_text_field("id", STRING | STORED);
        b.add_text_field("title", TEXT | STORED);
        b.add_text_field("body", TEXT | STORED);
        b.add_text_field("status", STRING | STORED);
        b.add_u64_field("priority", INDEXED | FAST | STORED);
        b.build()
    }
    fn default_fields(&self) -> Vec<String> {
        vec!["title".into(), "body".into()]
    }
    fn map(&self, event: &RecordedEvent, current: CurrentDoc<'_>) -> Result<Vec<SearchOp>, String> {
        let e: TicketEvent = event.decode().map_err(|e| e.to_string())?;
        let schema = self.schema();
        Ok(match e {
            TicketEvent::Opened {
                ticket,
                title,
                body,
                priority,
            } => {
                vec![SearchOp::Upsert {
                    id: ticket,
                    doc: self.doc(&title, &body, "open", priority)?,
                }]
            }
            TicketEvent::Commented {
                ticket,
                text: comment,
            } => match current(&ticket) {
                Some(doc) => {
                    let body = format!("{}\n{comment}", text(&doc, &schema, "body"));
                    let new = self.doc(
                        &text(&doc, &schema, "title"),
                        &body,
                        &text(&doc, &schema, "status"),
                        number(&doc, &schema, "priority"),
                    )?;
                    vec![SearchOp::Upsert {
                        id: ticket,
                        doc: new,
                    }]
                }
                None => vec![],
            },
            TicketEvent::Closed { ticket } => match current(&ticket) {
                Some(doc) => {
                    let new = self.doc(
                        &text(&doc, &schema, "title"),
                        &text(&doc, &schema, "body"),
                        "closed",
                        number(&doc, &schema, "priority"),
                    )?;
                    vec![SearchOp::Upsert {
                        id: ticket,
                        doc: new,
                    }]
                }
                None => vec![],
            },
            TicketEvent::Deleted { ticket } => vec![SearchOp::Delete { id: ticket }],
        })
    }
}

/// Words for generated tickets.
pub const WORDS: &[&str] = &[
    "printer",
    "network",
    "login",
    "password",
    "invoice",
    "laptop",
    "screen",
    "battery",
    "email",
    "calendar",
    "server",
    "backup",
    "database",
    "timeout",
    "crash",
    "update",
    "install",
    "license",
    "vpn",
    "wifi",
    "keyboard",
    "mouse",
    "monitor",
    "cable",
    "driver",
    "firmware",
    "account",
    "permission",
    "folder",
    "share",
    "sync",
    "slow",
    "error",
    "warning",
    "restart",
    "freeze",
];

/// A deterministic ticket `n` with a title and a ~100-word body.
pub fn generated(n: u64) -> TicketEvent {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut word = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        WORDS[(x % WORDS.len() as u64) as usize]
    };
    let title = format!("{} {} {}", word(), word(), word());
    let body = (0..100).map(|_| word()).collect::<Vec<_>>().join(" ");
    TicketEvent::Opened {
        ticket: format!("t{n}"),
        title,
        body,
        priority: n % 5,
    }
}
