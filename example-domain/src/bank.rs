//! The bank-account domain shared by the `bank` example, the benches and the tests.

use annals::prelude::*;
use serde::{Deserialize, Serialize};

/// Commands on an account.
#[derive(Command, Clone, Debug, PartialEq)]
pub enum AccountCommand {
    /// Open the account for an owner.
    Open {
        /// The account's id.
        #[command(id)]
        account: String,
        /// Who owns it.
        owner: String,
    },
    /// Put money in.
    Deposit {
        /// The account's id.
        #[command(id)]
        account: String,
        /// How much, in cents.
        amount: u64,
    },
    /// Take money out.
    Withdraw {
        /// The account's id.
        #[command(id)]
        account: String,
        /// How much, in cents.
        amount: u64,
    },
}

/// What happened to an account.
#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(schemas)]
pub enum AccountEvent {
    /// The account was opened.
    Opened {
        /// Who owns it.
        owner: String,
    },
    /// Money came in.
    Deposited {
        /// How much, in cents.
        amount: u64,
    },
    /// Money went out.
    Withdrew {
        /// How much, in cents.
        amount: u64,
    },
}

/// Rules an account command can break.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Opening an open account.
    #[error("account is already open")]
    AlreadyOpen,
    /// Any command but Open on an account that is not open.
    #[error("account is not open")]
    NotOpen,
    /// A deposit or withdrawal of nothing.
    #[error("amount must be positive")]
    ZeroAmount,
    /// Withdrawing more than the balance.
    #[error("insufficient funds: balance {balance}, wanted {wanted}")]
    InsufficientFunds {
        /// The balance.
        balance: u64,
        /// The amount asked for.
        wanted: u64,
    },
}

/// An account's state.
#[derive(Default, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The owner, once opened.
    pub owner: Option<String>,
    /// The balance in cents.
    pub balance: u64,
    /// How many deposits and withdrawals it has seen.
    pub transactions: u64,
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    fn handle(&self, command: &AccountCommand, _: &()) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open { owner, .. } => match self.owner {
                Some(_) => Err(AccountError::AlreadyOpen),
                None => Ok(vec![AccountEvent::Opened {
                    owner: owner.clone(),
                }]),
            },
            AccountCommand::Deposit { amount, .. } => {
                self.owner.as_ref().ok_or(AccountError::NotOpen)?;
                if *amount == 0 {
                    return Err(AccountError::ZeroAmount);
                }
                Ok(vec![AccountEvent::Deposited { amount: *amount }])
            }
            AccountCommand::Withdraw { amount, .. } => {
                self.owner.as_ref().ok_or(AccountError::NotOpen)?;
                if *amount == 0 {
                    return Err(AccountError::ZeroAmount);
                }
                if *amount > self.balance {
                    return Err(AccountError::InsufficientFunds {
                        balance: self.balance,
                        wanted: *amount,
                    });
                }
                Ok(vec![AccountEvent::Withdrew { amount: *amount }])
            }
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::Deposited { amount } => {
                self.balance += amount;
                self.transactions += 1;
            }
            AccountEvent::Withdrew { amount } => {
                self.balance = self.balance.saturating_sub(*amount);
                self.transactions += 1;
            }
        }
    }
}
