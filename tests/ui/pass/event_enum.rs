use annals::{CodecId, Command, DomainEvent};
use annals::DomainEvent as _;

#[derive(DomainEvent, Debug, Clone, PartialEq)]
enum TicketEvent {
    Opened { title: String, body: String },
    #[event(name = "Commented", version = 2)]
    CommentAdded(String, u32),
    Closed,
}

#[derive(Command)]
enum TicketCommand {
    Open {
        #[command(id)]
        ticket: u64,
        title: String,
    },
    Close(#[command(id)] String),
}

#[derive(Command)]
struct Comment {
    #[command(id)]
    ticket: String,
    text: String,
}

fn main() {
    let events = [
        TicketEvent::Opened { title: "t".into(), body: "b".into() },
        TicketEvent::CommentAdded("hi".into(), 3),
        TicketEvent::Closed,
    ];
    assert_eq!(
        TicketEvent::event_types(),
        &[("Opened", 1), ("Commented", 2), ("Closed", 1)]
    );
    for e in &events {
        for codec in [CodecId::BINCODE, CodecId::JSON] {
            let bytes = e.encode_payload(codec).unwrap();
            let back = TicketEvent::decode_payload(e.event_type(), codec, &bytes).unwrap();
            assert_eq!(&back, e);
        }
    }
    assert_eq!(events[1].event_type(), "Commented");
    assert_eq!(events[1].schema_version(), 2);
    assert!(TicketEvent::decode_payload("Nope", CodecId::JSON, b"null").is_err());
    use annals::Command as _;
    assert_eq!(TicketCommand::Open { ticket: 7, title: String::new() }.aggregate_id(), "7");
    assert_eq!(TicketCommand::Close("x".into()).aggregate_id(), "x");
    assert_eq!(Comment { ticket: "t-1".into(), text: String::new() }.aggregate_id(), "t-1");
}
