use annals::Command;

#[derive(Command)]
struct Deposit {
    account: String,
    amount: u64,
}

#[derive(Command)]
enum Cmd {
    Open {
        #[command(id)]
        account: String,
    },
    Close {
        account: String,
    },
}

fn main() {}
