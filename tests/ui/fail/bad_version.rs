use annals::DomainEvent;

#[derive(DomainEvent)]
enum E {
    #[event(version = 0)]
    A,
    #[event(version = 99999999999)]
    B,
    #[event(version = 2, version = 3)]
    C,
}

fn main() {}
