use annals::DomainEvent;

#[derive(DomainEvent)]
enum E {
    #[event(colour = "red")]
    A,
    #[event(name = "A")]
    B,
    #[event(version = 0)]
    C,
}

fn main() {}
