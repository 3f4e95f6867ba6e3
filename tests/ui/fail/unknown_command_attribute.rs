use annals::Command;

#[derive(Command)]
struct Deposit {
    #[command(key)]
    account: String,
}

fn main() {}
