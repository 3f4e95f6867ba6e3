//! Properties of the checker over generated schemas of the subset it reads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use annals_contracts::{Direction, IncompatibilityKind, Mode, check};
use proptest::prelude::*;
use serde_json::{Value, json};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"type": "null"})),
        Just(json!({"type": "boolean"})),
        prop::sample::select(vec![
            json!({"type": "integer", "format": "uint8", "minimum": 0, "maximum": 255}),
            json!({"type": "integer", "format": "uint64", "minimum": 0}),
            json!({"type": "integer", "format": "int32"}),
            json!({"type": "integer", "minimum": 1, "maximum": 10}),
            json!({"type": "integer", "format": "int32", "not": {"const": 0}}),
        ]),
        Just(json!({"type": "number", "format": "double"})),
        prop::option::of(prop::sample::select(vec!["uuid", "date-time"])).prop_map(|f| match f {
            Some(f) => json!({"type": "string", "format": f}),
            None => json!({"type": "string"}),
        }),
        prop::collection::btree_set("[a-c]", 1..3)
            .prop_map(|v| json!({"type": "string", "enum": v.into_iter().collect::<Vec<_>>()})),
        Just(json!(true)),
        Just(json!({"type": ["string", "null"]})),
    ]
}

fn object(inner: impl Strategy<Value = Value>, closed: bool) -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-e]", (inner, any::<bool>()), 0..4).prop_map(
        move |props: BTreeMap<String, (Value, bool)>| {
            let required: Vec<&String> = props
                .iter()
                .filter(|(_, (_, r))| *r)
                .map(|(k, _)| k)
                .collect();
            let properties: serde_json::Map<String, Value> = props
                .iter()
                .map(|(k, (s, _))| (k.clone(), s.clone()))
                .collect();
            let mut o = json!({"type": "object", "properties": properties, "required": required});
            if closed {
                o["additionalProperties"] = json!(false);
            }
            o
        },
    )
}

/// A whole document: a tree, or a tree behind a reference into the root's `$defs`.
fn schema() -> impl Strategy<Value = Value> {
    (tree(), any::<bool>()).prop_map(|(t, by_ref)| {
        if by_ref {
            json!({"$ref": "#/$defs/T", "$defs": {"T": t}})
        } else {
            t
        }
    })
}

/// A schema without references.
fn tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            object(inner.clone(), false),
            object(inner.clone(), true),
            inner
                .clone()
                .prop_map(|i| json!({"type": "array", "items": i})),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| json!({"anyOf": [a, b]})),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| json!({
                "type": "array", "prefixItems": [a, b], "minItems": 2, "maxItems": 2
            })),
            inner.prop_map(|i| json!({"type": "object", "additionalProperties": i})),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if std::env::var_os("ANNALS_STRESS").is_some() { 5_000 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_schema_is_compatible_with_itself_under_every_mode(s in schema()) {
        for mode in Mode::ALL {
            let found = check(&s, &s, mode).unwrap();
            prop_assert!(found.is_empty(), "{mode}: {found:#?}\n{s}");
        }
    }

    #[test]
    fn an_added_optional_property_is_backward_and_forward_compatible(
        old in object(tree(), false),
        added in tree(),
    ) {
        let mut new = old.clone();
        new["properties"]["zz_added"] = added;
        prop_assert!(check(&old, &new, Mode::Full).unwrap().is_empty());
        prop_assert!(check(&old, &new, Mode::FullTransitive).unwrap().is_empty());
    }

    #[test]
    fn a_removed_required_property_breaks_forward_only(
        old in object(tree(), false),
        kept in tree(),
    ) {
        let mut old = old;
        old["properties"]["zz_kept"] = kept;
        old["required"].as_array_mut().unwrap().push(json!("zz_kept"));
        let mut new = old.clone();
        new["properties"].as_object_mut().unwrap().remove("zz_kept");
        new["required"].as_array_mut().unwrap().retain(|r| r != "zz_kept");
        prop_assert!(check(&old, &new, Mode::Backward).unwrap().is_empty());
        let forward = check(&old, &new, Mode::Forward).unwrap();
        let missing = IncompatibilityKind::RequiredPropertyAdded { property: "zz_kept".into() };
        prop_assert!(forward.iter().any(|f| f.path.is_empty() && f.kind == missing), "{forward:#?}");
    }

    /// Backward from `a` to `b` is forward from `b` to `a`.
    #[test]
    fn directions_mirror(a in schema(), b in schema()) {
        let backward = check(&a, &b, Mode::Backward).unwrap();
        let forward = check(&b, &a, Mode::Forward).unwrap();
        prop_assert_eq!(backward.len(), forward.len());
        for (x, y) in backward.iter().zip(&forward) {
            prop_assert_eq!(x.direction, Direction::Backward);
            prop_assert_eq!(y.direction, Direction::Forward);
            prop_assert_eq!((&x.path, &x.kind), (&y.path, &y.kind));
        }
        // Full is both.
        prop_assert_eq!(check(&a, &b, Mode::Full).unwrap().len(),
            backward.len() + check(&a, &b, Mode::Forward).unwrap().len());
    }
}
