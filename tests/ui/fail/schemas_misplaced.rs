use annals::DomainEvent;

#[derive(DomainEvent)]
#[event(name = "E", version = 2)]
enum E {
    #[event(schemas)]
    A,
}

#[derive(DomainEvent)]
#[event(schemas = true)]
enum F {
    A,
}

#[derive(DomainEvent, serde::Serialize, serde::Deserialize)]
#[event(schemas, schemas)]
struct G {
    a: u8,
}

fn main() {}
