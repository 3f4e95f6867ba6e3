//! The support-ticket domain: an aggregate (commands, events, rules), its search read model
//! and its list read model. Shared by the REPL, the search tests and the benches.

use annals::RecordedEvent;
use annals::prelude::*;
use annals::projections::tantivy::TantivyDocument;
use annals::projections::tantivy::schema::{FAST, INDEXED, STORED, STRING, Schema, TEXT, Value};
use annals::projections::{
    CurrentDoc, HandlerError, KvProjector, KvWriter, SearchOp, SearchProjector,
};
use serde::{Deserialize, Serialize};

/// What happened to a ticket. Stored with bincode, one event type per variant.
#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(schemas)]
pub enum TicketEvent {
    /// A ticket was opened.
    Opened {
        /// The one-line summary.
        title: String,
        /// The full description.
        body: String,
        /// The priority, 1 (highest) to 5.
        priority: u8,
    },
    /// Someone commented.
    Commented {
        /// What the comment says.
        text: String,
    },
    /// It was assigned to someone.
    Assigned {
        /// The name of the new assignee.
        to: String,
    },
    /// Its priority changed.
    PriorityChanged {
        /// The new priority, 1 (highest) to 5.
        priority: u8,
    },
    /// It was closed.
    Closed {
        /// Why it was closed.
        reason: String,
    },
    /// It was opened again.
    Reopened,
}

/// What can be asked of a ticket.
#[derive(Clone, Debug, PartialEq)]
pub enum TicketCommand {
    /// Open a new ticket.
    Open {
        /// The one-line summary; must not be empty.
        title: String,
        /// The full description; may be empty.
        body: String,
        /// The priority, 1 (highest) to 5.
        priority: u8,
    },
    /// Add a comment.
    Comment {
        /// What the comment says; must not be empty.
        text: String,
    },
    /// Assign it.
    Assign {
        /// The name of the person to assign it to; must not be empty.
        to: String,
    },
    /// Change its priority (1 = highest … 5).
    ChangePriority {
        /// The new priority, 1 (highest) to 5.
        priority: u8,
    },
    /// Close it.
    Close {
        /// Why it is being closed; must not be empty.
        reason: String,
    },
    /// Reopen it.
    Reopen,
}

/// Rules a ticket command can break.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Opening an existing ticket.
    #[error("ticket already exists")]
    AlreadyOpened,
    /// Anything on a ticket that was never opened.
    #[error("no such ticket")]
    NotFound,
    /// Changing a closed ticket.
    #[error("ticket is closed")]
    Closed,
    /// Reopening an open ticket.
    #[error("ticket is not closed")]
    NotClosed,
    /// An empty title, text, name or reason.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A priority outside 1..=5.
    #[error("priority must be 1 (highest) to 5")]
    BadPriority,
}

/// Status of a ticket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Not opened yet.
    #[default]
    New,
    /// Open.
    Open,
    /// Closed.
    Closed,
}

impl Status {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Open => "open",
            Status::Closed => "closed",
        }
    }
}

/// A ticket's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// The one-line summary.
    pub title: String,
    /// The full description, as opened.
    pub body: String,
    /// Whether it is new, open or closed.
    pub status: Status,
    /// The current priority, 1 (highest) to 5.
    pub priority: u8,
    /// Who it is assigned to, if anyone.
    pub assignee: Option<String>,
    /// The comments, oldest first.
    pub comments: Vec<String>,
    /// Why it was closed, while it is closed.
    pub close_reason: Option<String>,
}

fn non_empty(s: &str, what: &'static str) -> Result<(), TicketError> {
    if s.trim().is_empty() {
        Err(TicketError::Empty(what))
    } else {
        Ok(())
    }
}

impl Aggregate for Ticket {
    const TYPE: &'static str = "ticket";
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Error = TicketError;
    type Services = ();

    fn handle(&self, command: &TicketCommand, _: &()) -> Result<Vec<TicketEvent>, TicketError> {
        use TicketCommand as C;
        if !matches!(command, C::Open { .. }) && self.status == Status::New {
            return Err(TicketError::NotFound);
        }
        let open = |s: &Ticket| {
            if s.status == Status::Closed {
                Err(TicketError::Closed)
            } else {
                Ok(())
            }
        };
        Ok(match command {
            C::Open {
                title,
                body,
                priority,
            } => {
                if self.status != Status::New {
                    return Err(TicketError::AlreadyOpened);
                }
                non_empty(title, "title")?;
                if !(1..=5).contains(priority) {
                    return Err(TicketError::BadPriority);
                }
                vec![TicketEvent::Opened {
                    title: title.clone(),
                    body: body.clone(),
                    priority: *priority,
                }]
            }
            C::Comment { text } => {
                non_empty(text, "comment")?;
                vec![TicketEvent::Commented { text: text.clone() }]
            }
            C::Assign { to } => {
                open(self)?;
                non_empty(to, "assignee")?;
                vec![TicketEvent::Assigned { to: to.clone() }]
            }
            C::ChangePriority { priority } => {
                open(self)?;
                if !(1..=5).contains(priority) {
                    return Err(TicketError::BadPriority);
                }
                vec![TicketEvent::PriorityChanged {
                    priority: *priority,
                }]
            }
            C::Close { reason } => {
                open(self)?;
                non_empty(reason, "reason")?;
                vec![TicketEvent::Closed {
                    reason: reason.clone(),
                }]
            }
            C::Reopen => {
                if self.status != Status::Closed {
                    return Err(TicketError::NotClosed);
                }
                vec![TicketEvent::Reopened]
            }
        })
    }

    fn apply(&mut self, event: &TicketEvent) {
        match event {
            TicketEvent::Opened {
                title,
                body,
                priority,
            } => {
                self.title = title.clone();
                self.body = body.clone();
                self.priority = *priority;
                self.status = Status::Open;
            }
            TicketEvent::Commented { text } => self.comments.push(text.clone()),
            TicketEvent::Assigned { to } => self.assignee = Some(to.clone()),
            TicketEvent::PriorityChanged { priority } => self.priority = *priority,
            TicketEvent::Closed { reason } => {
                self.status = Status::Closed;
                self.close_reason = Some(reason.clone());
            }
            TicketEvent::Reopened => {
                self.status = Status::Open;
                self.close_reason = None;
            }
        }
    }
}

/// The ticket id of an event of a `ticket-<id>` stream.
pub fn ticket_id(event: &RecordedEvent) -> Option<&str> {
    event.stream.as_str().strip_prefix("ticket-")
}

fn decode(event: &RecordedEvent) -> Result<Option<(String, TicketEvent)>, String> {
    let Some(id) = ticket_id(event) else {
        return Ok(None);
    };
    if TicketEvent::current_schema_version(&event.event_type).is_none() {
        return Ok(None);
    }
    let e = TicketEvent::decode_payload(&event.event_type, event.codec, &event.payload)
        .map_err(|e| e.to_string())?;
    Ok(Some((id.to_owned(), e)))
}

/// Indexes tickets: title and body (with comments) searchable; status, assignee and
/// priority stored; priority filterable.
pub struct TicketSearch {
    /// The projection's name (`ticket-search` by default).
    pub name: &'static str,
    /// The projection's version (1 by default); raising it rebuilds the index.
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

/// The fields of a ticket document.
#[derive(Default)]
struct Fields {
    title: String,
    body: String,
    status: String,
    assignee: String,
    priority: u64,
}

impl Fields {
    fn read(doc: &TantivyDocument, schema: &Schema) -> Self {
        let text = |name: &str| {
            schema
                .get_field(name)
                .ok()
                .and_then(|f| doc.get_first(f).and_then(|v| v.as_str().map(str::to_owned)))
                .unwrap_or_default()
        };
        let priority = schema
            .get_field("priority")
            .ok()
            .and_then(|f| doc.get_first(f).and_then(|v| v.as_u64()))
            .unwrap_or(0);
        Fields {
            title: text("title"),
            body: text("body"),
            status: text("status"),
            assignee: text("assignee"),
            priority,
        }
    }

    fn doc(&self, schema: &Schema) -> Result<TantivyDocument, String> {
        let field = |n: &str| schema.get_field(n).map_err(|e| e.to_string());
        let mut doc = TantivyDocument::default();
        doc.add_text(field("title")?, &self.title);
        doc.add_text(field("body")?, &self.body);
        doc.add_text(field("status")?, &self.status);
        doc.add_text(field("assignee")?, &self.assignee);
        doc.add_u64(field("priority")?, self.priority);
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
        b.add_text_field("assignee", STRING | STORED);
        b.add_u64_field("priority", INDEXED | FAST | STORED);
        b.build()
    }
    fn default_fields(&self) -> Vec<String> {
        vec!["title".into(), "body".into()]
    }
    fn map(
        &self,
        event: &RecordedEvent,
        current: CurrentDoc<'_>,
    ) -> Result<Vec<SearchOp>, HandlerError> {
        let Some((id, e)) = decode(event)? else {
            return Ok(vec![]);
        };
        let schema = self.schema();
        let mut f = match (&e, current(&id)) {
            (TicketEvent::Opened { .. }, _) => Fields::default(),
            (_, Some(doc)) => Fields::read(&doc, &schema),
            (_, None) => return Ok(vec![]),
        };
        match e {
            TicketEvent::Opened {
                title,
                body,
                priority,
            } => {
                f = Fields {
                    title,
                    body,
                    status: "open".into(),
                    assignee: String::new(),
                    priority: u64::from(priority),
                };
            }
            TicketEvent::Commented { text } => f.body = format!("{}\n{text}", f.body),
            TicketEvent::Assigned { to } => f.assignee = to,
            TicketEvent::PriorityChanged { priority } => f.priority = u64::from(priority),
            TicketEvent::Closed { .. } => f.status = "closed".into(),
            TicketEvent::Reopened => f.status = "open".into(),
        }
        Ok(vec![SearchOp::Upsert {
            id,
            doc: f.doc(&schema)?,
        }])
    }
}

/// One row of the ticket list read model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TicketRow {
    /// The one-line summary.
    pub title: String,
    /// `open` or `closed`.
    pub status: String,
    /// Who it is assigned to, if anyone.
    pub assignee: Option<String>,
    /// The current priority, 1 (highest) to 5.
    pub priority: u8,
    /// How many comments it has.
    pub comments: u32,
}

/// Tickets by id, with status and assignee, in a sled KV read model.
pub struct TicketList;

impl KvProjector for TicketList {
    type Key = String;
    type Value = TicketRow;
    fn name(&self) -> &str {
        "ticket-list"
    }
    fn apply(
        &self,
        event: &RecordedEvent,
        kv: &mut KvWriter<'_, String, TicketRow>,
    ) -> Result<(), HandlerError> {
        let Some((id, e)) = decode(event)? else {
            return Ok(());
        };
        let mut row = kv.get(&id)?.unwrap_or_default();
        match e {
            TicketEvent::Opened {
                title, priority, ..
            } => {
                row = TicketRow {
                    title,
                    status: "open".into(),
                    assignee: None,
                    priority,
                    comments: 0,
                };
            }
            TicketEvent::Commented { .. } => row.comments += 1,
            TicketEvent::Assigned { to } => row.assignee = Some(to),
            TicketEvent::PriorityChanged { priority } => row.priority = priority,
            TicketEvent::Closed { .. } => row.status = "closed".into(),
            TicketEvent::Reopened => row.status = "open".into(),
        }
        Ok(kv.put(&id, &row)?)
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

/// A deterministic `Opened` event for ticket `n`: a 3-word title and a ~100-word body.
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
        title,
        body,
        priority: 1 + (n % 5) as u8,
    }
}

/// The stream of ticket `id`.
///
/// # Errors
/// [`annals::Error::InvalidStreamId`] for an id that makes no valid stream name.
pub fn stream(id: &str) -> Result<StreamId, annals::Error> {
    StreamId::for_aggregate(Ticket::TYPE, id)
}

/// The event as stored.
pub fn data(e: &TicketEvent) -> EventData {
    e.to_event_data()
        // Unreachable: bincode encodes these variants (strings and integers only) into a
        // growable buffer, which cannot fail.
        .unwrap_or_else(|e| unreachable!("serializable: {e}"))
}
