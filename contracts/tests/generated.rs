//! The checker on what schemars really emits for the Rust types events are made of: every
//! schema reads, is compatible with itself, accepts the JSON serde writes for a value, and
//! typical changes between two Rust types are found.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::{NonZeroI32, NonZeroU32};

use annals_contracts::testing::{assert_compatible, assert_incompatible};
use annals_contracts::{IncompatibilityKind as K, Mode, accepts, check, schema_of};
use schemars::JsonSchema;
use serde::Serialize;

#[derive(JsonSchema, Serialize)]
struct Scalars {
    a: i32,
    b: f64,
    c: f32,
    d: u64,
    e: i64,
    f: usize,
    g: isize,
    h: u128,
    i: i128,
    j: u16,
    k: i8,
    l: char,
    m: bool,
    n: Option<Option<u8>>,
    o: NonZeroU32,
    p: NonZeroI32,
}

#[derive(JsonSchema, Serialize)]
enum Kind {
    A,
    B,
    C(u32),
    D {
        x: String,
    },
    /// Documented.
    E,
}

#[derive(JsonSchema, Serialize)]
#[serde(tag = "type")]
enum Tagged {
    A,
    B { x: u32 },
}

#[derive(JsonSchema, Serialize)]
#[serde(untagged)]
enum Untagged {
    A(u32),
    B(String),
}

#[derive(JsonSchema, Serialize)]
struct Tree {
    children: Vec<Tree>,
    label: Option<String>,
}

#[derive(JsonSchema, Serialize)]
struct Containers {
    v: Vec<u8>,
    s: BTreeSet<String>,
    m: HashMap<String, u32>,
    mi: BTreeMap<u32, String>,
    ms: BTreeMap<i64, bool>,
    a: [u8; 3],
    t: (u8, String),
    tree: Box<Tree>,
    val: serde_json::Value,
    ip: std::net::IpAddr,
    path: std::path::PathBuf,
    dur: std::time::Duration,
    kind: Kind,
    tagged: Tagged,
    untagged: Untagged,
    unit: (),
}

#[derive(JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
struct Closed {
    a: u32,
    #[serde(default)]
    b: u32,
}

#[derive(JsonSchema, Serialize)]
struct Flat {
    a: u32,
    #[serde(flatten)]
    k: Tagged,
}

#[derive(JsonSchema, Serialize)]
struct FlatMap {
    a: u32,
    #[serde(flatten)]
    rest: HashMap<String, u32>,
}

#[derive(JsonSchema, Serialize)]
struct Newtype(u64);

#[derive(JsonSchema, Serialize)]
struct Pair(u64, String);

#[derive(JsonSchema, Serialize)]
struct Unit;

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

fn self_compatible_and_describes<T: JsonSchema + Serialize>(values: &[T]) {
    let schema = schema_of::<T>();
    for mode in Mode::ALL {
        assert_compatible(&schema, &schema, mode);
    }
    for v in values {
        let j = json(v);
        assert_ne!(
            accepts(&schema, &j).unwrap(),
            Some(false),
            "{j} against {schema}"
        );
    }
}

#[test]
fn every_schema_schemars_emits_here_is_read_and_self_compatible() {
    self_compatible_and_describes(&[Scalars {
        a: -1,
        b: 0.5,
        c: 1.5,
        d: u64::MAX,
        e: i64::MIN,
        f: 3,
        g: -3,
        h: 5,
        i: -5,
        j: 7,
        k: -7,
        l: 'x',
        m: true,
        n: Some(None),
        o: NonZeroU32::MIN,
        p: NonZeroI32::MIN,
    }]);
    let tree = Tree {
        children: vec![Tree {
            children: vec![],
            label: None,
        }],
        label: Some("root".into()),
    };
    self_compatible_and_describes(&[Containers {
        v: vec![1, 2],
        s: ["a".to_owned()].into(),
        m: [("k".to_owned(), 1)].into(),
        mi: [(7, "seven".to_owned())].into(),
        ms: [(-7, true)].into(),
        a: [1, 2, 3],
        t: (1, "one".into()),
        tree: Box::new(tree),
        val: serde_json::json!({"any": [1, "thing"]}),
        ip: std::net::IpAddr::from([127, 0, 0, 1]),
        path: "/tmp".into(),
        dur: std::time::Duration::from_millis(1500),
        kind: Kind::D { x: "x".into() },
        tagged: Tagged::B { x: 1 },
        untagged: Untagged::B("b".into()),
        unit: (),
    }]);
    self_compatible_and_describes(&[Closed { a: 1, b: 2 }]);
    self_compatible_and_describes(&[
        Flat { a: 1, k: Tagged::A },
        Flat {
            a: 1,
            k: Tagged::B { x: 2 },
        },
    ]);
    self_compatible_and_describes(&[FlatMap {
        a: 1,
        rest: [("z".to_owned(), 3)].into(),
    }]);
    self_compatible_and_describes(&[Newtype(5)]);
    self_compatible_and_describes(&[Pair(5, "five".into())]);
    self_compatible_and_describes(&[Unit]);
    for k in [
        Kind::A,
        Kind::B,
        Kind::C(3),
        Kind::D { x: "x".into() },
        Kind::E,
    ] {
        self_compatible_and_describes(&[k]);
    }
}

mod v1 {
    use super::*;
    #[derive(JsonSchema)]
    pub(crate) struct Order {
        pub(crate) id: u64,
        pub(crate) total: u32,
        pub(crate) status: Status,
        pub(crate) lines: Vec<Line>,
    }
    #[derive(JsonSchema)]
    pub(crate) enum Status {
        Open,
        Paid { at: String },
    }
    #[derive(JsonSchema)]
    pub(crate) struct Line {
        pub(crate) sku: String,
        pub(crate) qty: u16,
    }
}

mod v2 {
    use super::*;
    #[derive(JsonSchema)]
    pub(crate) struct Order {
        pub(crate) id: u64,
        /// Widened.
        pub(crate) total: u64,
        pub(crate) status: Status,
        pub(crate) lines: Vec<Line>,
        pub(crate) note: Option<String>,
    }
    #[derive(JsonSchema)]
    pub(crate) enum Status {
        Open,
        Paid { at: String },
        Refunded,
    }
    #[derive(JsonSchema)]
    pub(crate) struct Line {
        pub(crate) sku: String,
        pub(crate) qty: u16,
        pub(crate) gift: Option<bool>,
    }
}

#[test]
fn an_evolved_order_is_backward_compatible_and_forward_breaks_are_named() {
    let (old, new) = (schema_of::<v1::Order>(), schema_of::<v2::Order>());
    assert_compatible(&old, &new, Mode::Backward);
    let found = assert_incompatible(&old, &new, Mode::Forward);
    let mut at: Vec<(&str, &K)> = found.iter().map(|f| (f.path.as_str(), &f.kind)).collect();
    at.sort_by_key(|(p, _)| *p);
    assert_eq!(at.len(), 2, "{found:#?}");
    assert_eq!(at[0].0, "/status");
    assert_eq!(
        at[0].1,
        &K::ValueRefused {
            value: serde_json::json!("Refunded")
        }
    );
    assert_eq!(at[1].0, "/total");
    assert!(matches!(at[1].1, K::LimitNarrowed { keyword, .. } if keyword == "maximum"));
}

#[test]
fn a_change_deep_in_a_nested_named_type_is_found_where_it_is() {
    mod v3 {
        use super::*;
        #[derive(JsonSchema)]
        pub(crate) struct Order {
            pub(crate) id: u64,
            pub(crate) total: u64,
            pub(crate) status: v2::Status,
            pub(crate) lines: Vec<Line>,
            pub(crate) note: Option<String>,
        }
        #[derive(JsonSchema)]
        pub(crate) struct Line {
            pub(crate) sku: String,
            pub(crate) qty: i16,
            pub(crate) gift: Option<bool>,
        }
    }
    let found = check(
        &schema_of::<v2::Order>(),
        &schema_of::<v3::Order>(),
        Mode::Backward,
    )
    .unwrap();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].path, "/lines/*/qty");
    assert!(matches!(&found[0].kind, K::LimitNarrowed { keyword, .. } if keyword == "maximum"));
}
