use annals::DomainEvent;

#[derive(DomainEvent)]
enum E<T> {
    A(T),
}

fn main() {}
