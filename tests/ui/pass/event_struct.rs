use annals::{CodecId, DomainEvent};

#[derive(DomainEvent, serde::Serialize, serde::Deserialize, Debug, PartialEq)]
#[event(name = "PriceChanged", version = 3)]
struct PriceChangedV3 {
    cents: u64,
}

fn main() {
    let e = PriceChangedV3 { cents: 5 };
    assert_eq!(e.event_type(), "PriceChanged");
    assert_eq!(e.schema_version(), 3);
    let bytes = e.encode_payload(CodecId::BINCODE).unwrap();
    assert_eq!(PriceChangedV3::decode_payload("PriceChanged", CodecId::BINCODE, &bytes).unwrap(), e);
    assert!(PriceChangedV3::decode_payload("Other", CodecId::BINCODE, &bytes).is_err());
    let data = e.to_event_data().unwrap();
    assert_eq!(data.schema_version, 3);
}
