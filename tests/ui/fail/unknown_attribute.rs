use annals::DomainEvent;

#[derive(DomainEvent)]
enum E {
    #[event(nmae = "A")]
    A,
}

fn main() {}
