use annals::DomainEvent;

#[derive(DomainEvent)]
enum E {
    Opened,
    #[event(name = "Opened")]
    Reopened,
}

fn main() {}
