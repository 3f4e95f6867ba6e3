//! A test kit for aggregates, with no store: `given(events).when(command).then_expect(events)`.
//!
//! ```
//! use annals::prelude::*;
//! use annals::testing::given;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
//! enum AccountEvent {
//!     Opened { owner: String },
//!     Deposited { amount: u64 },
//! }
//!
//! #[derive(Default, Clone, Debug, Serialize, Deserialize)]
//! struct Account {
//!     open: bool,
//!     balance: u64,
//! }
//!
//! #[derive(Debug, PartialEq, thiserror::Error)]
//! #[error("the account is not open")]
//! struct NotOpen;
//!
//! impl Aggregate for Account {
//!     const TYPE: &'static str = "account";
//!     type Command = u64; // a deposit
//!     type Event = AccountEvent;
//!     type Error = NotOpen;
//!     type Services = ();
//!     fn handle(&self, amount: &u64, _: &()) -> Result<Vec<AccountEvent>, NotOpen> {
//!         if !self.open {
//!             return Err(NotOpen);
//!         }
//!         Ok(vec![AccountEvent::Deposited { amount: *amount }])
//!     }
//!     fn apply(&mut self, e: &AccountEvent) {
//!         match e {
//!             AccountEvent::Opened { .. } => self.open = true,
//!             AccountEvent::Deposited { amount } => self.balance += amount,
//!         }
//!     }
//! }
//!
//! given::<Account>([AccountEvent::Opened { owner: "ada".into() }])
//!     .when(5)
//!     .then_expect([AccountEvent::Deposited { amount: 5 }]);
//! given::<Account>([]).when(5).then_expect_error(NotOpen);
//! ```
//!
//! Every event given or produced is also round-tripped through its payload codec, so an
//! event that would not survive storage fails here first.

use std::fmt::Debug;

use annals_core::{Aggregate, CodecId, DomainEvent};

/// Starts a scenario from the events already in the aggregate's stream, with default services.
pub fn given<A>(events: impl IntoIterator<Item = A::Event>) -> Given<A>
where
    A: Aggregate,
    A::Services: Default,
{
    given_with(A::Services::default(), events)
}

/// Starts a scenario with explicit services.
pub fn given_with<A: Aggregate>(
    services: A::Services,
    events: impl IntoIterator<Item = A::Event>,
) -> Given<A> {
    let mut state = A::default();
    for e in events {
        check_round_trip(&e);
        state.apply(&e);
    }
    Given { state, services }
}

/// Fails the running test with `message`. The test kit's whole purpose is to fail tests the
/// way `assert!` does: it is only ever called from test code, never on a production path, so
/// no user data or stored bytes reach this panic outside a test.
#[allow(clippy::panic)]
#[track_caller]
fn fail(message: String) -> ! {
    panic!("{message}")
}

/// Panics unless `event` decodes back from its own payload (compared by re-encoding).
fn check_round_trip<E: DomainEvent>(event: &E) {
    let codec = CodecId::default();
    let bytes = event
        .encode_payload(codec)
        .unwrap_or_else(|e| fail(format!("event {} does not encode: {e}", event.event_type())));
    let back = E::decode_payload(event.event_type(), codec, &bytes).unwrap_or_else(|e| {
        fail(format!(
            "event {} does not decode from its own payload: {e}",
            event.event_type()
        ))
    });
    let again = back.encode_payload(codec).unwrap_or_default();
    assert!(
        again == bytes,
        "event {} changes when stored and read back",
        event.event_type()
    );
}

/// A scenario's starting state.
pub struct Given<A: Aggregate> {
    state: A,
    services: A::Services,
}

impl<A: Aggregate> Given<A> {
    /// The state the given events produce.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Decides `command` on the state.
    pub fn when(self, command: A::Command) -> When<A> {
        let result = self.state.handle(&command, &self.services);
        if let Ok(events) = &result {
            events.iter().for_each(check_round_trip);
        }
        When {
            state: self.state,
            result,
        }
    }
}

/// A scenario's outcome, to check.
pub struct When<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> When<A> {
    /// Asserts the command produced exactly `expected`; returns the state after applying them.
    pub fn then_expect(self, expected: impl IntoIterator<Item = A::Event>) -> A
    where
        A::Event: PartialEq + Debug,
    {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert!(
                    events == expected,
                    "expected events\n  {expected:?}\nbut got\n  {events:?}"
                );
                let mut state = self.state;
                for e in &events {
                    state.apply(e);
                }
                state
            }
            Err(e) => fail(format!(
                "expected events {expected:?} but the command was rejected: {e}"
            )),
        }
    }

    /// Asserts the command was rejected with `expected`.
    pub fn then_expect_error(self, expected: A::Error)
    where
        A::Error: PartialEq + Debug,
        A::Event: Debug,
    {
        match self.result {
            Err(e) => assert!(e == expected, "expected error {expected:?} but got {e:?}"),
            Ok(events) => fail(format!(
                "expected error {expected:?} but the command produced {events:?}"
            )),
        }
    }

    /// Asserts the command was rejected with an error for which `check` is true.
    pub fn then_expect_error_matching(self, check: impl FnOnce(&A::Error) -> bool)
    where
        A::Event: Debug,
    {
        match self.result {
            Err(e) => assert!(
                check(&e),
                "the command was rejected with an unexpected error: {e}"
            ),
            Ok(events) => fail(format!(
                "expected an error but the command produced {events:?}"
            )),
        }
    }

    /// The raw outcome.
    pub fn into_result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }
}
