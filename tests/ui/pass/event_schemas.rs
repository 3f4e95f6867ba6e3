use annals::contracts::{EventContracts, Mode, accepts, check};
use annals::{CodecId, DomainEvent};

/// Every shape a variant's payload can have, and its schema describing exactly that JSON.
#[derive(DomainEvent, Debug, Clone, PartialEq)]
#[event(schemas)]
enum TicketEvent {
    /// A ticket was opened.
    Opened {
        /// The summary.
        title: String,
        due: Option<u64>,
    },
    #[event(name = "Commented", version = 2)]
    CommentAdded(String, u32),
    Assigned(String),
    Closed,
}

#[derive(DomainEvent, serde::Serialize, serde::Deserialize, schemars::JsonSchema, Debug, PartialEq)]
#[event(name = "PriceChanged", version = 3, schemas)]
struct PriceChangedV3 {
    cents: u64,
}

fn main() {
    let schemas = TicketEvent::event_schemas();
    let listed: Vec<(&str, u32)> = schemas.iter().map(|s| (s.event_type.as_str(), s.version)).collect();
    assert_eq!(listed, TicketEvent::event_types());
    let events = [
        TicketEvent::Opened { title: "t".into(), due: None },
        TicketEvent::Opened { title: "t".into(), due: Some(3) },
        TicketEvent::CommentAdded("hi".into(), 3),
        TicketEvent::Assigned("ann".into()),
        TicketEvent::Closed,
    ];
    for e in &events {
        let bytes = e.encode_payload(CodecId::JSON).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let schema = &schemas.iter().find(|s| s.event_type == e.event_type()).unwrap().schema;
        assert_eq!(accepts(schema, &json).unwrap(), Some(true), "{json} against {schema}");
    }
    // Named fields: an object, the `Option` not required; documentation kept.
    let opened = &schemas[0].schema;
    assert_eq!(opened["type"], "object");
    assert_eq!(opened["required"], serde_json::json!(["title"]));
    assert_eq!(opened["description"], "A ticket was opened.");
    assert_eq!(opened["properties"]["title"]["description"], "The summary.");
    // Two unnamed fields: an array of two; one: the field itself; none: null.
    assert_eq!(schemas[1].schema["type"], "array");
    assert_eq!(schemas[1].schema["prefixItems"][1]["format"], "uint32");
    assert_eq!(schemas[2].schema["type"], "string");
    assert_eq!(schemas[3].schema["type"], "null");
    for s in &schemas {
        assert!(check(&s.schema, &s.schema, Mode::FullTransitive).unwrap().is_empty());
    }

    let price = PriceChangedV3::event_schemas();
    assert_eq!(price.len(), 1);
    assert_eq!((price[0].event_type.as_str(), price[0].version), ("PriceChanged", 3));
    assert_eq!(price[0].file().unwrap(), "PriceChanged/v3.json");
    assert_eq!(price[0].schema["required"], serde_json::json!(["cents"]));
}
