//! Each rule of the checker, in each direction: what is compatible, what is found, where.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use annals_contracts::testing::{assert_compatible, assert_incompatible};
use annals_contracts::{
    ContractError, Direction, IncompatibilityKind as K, Mode, accepts, check, check_history,
};
use serde_json::{Value, json};

fn obj(props: &[(&str, Value)], required: &[&str]) -> Value {
    let mut properties = serde_json::Map::new();
    for (k, v) in props {
        properties.insert((*k).to_owned(), v.clone());
    }
    json!({"type": "object", "properties": properties, "required": required})
}

fn u64s() -> Value {
    json!({"type": "integer", "format": "uint64", "minimum": 0})
}
fn u32s() -> Value {
    json!({"type": "integer", "format": "uint32", "minimum": 0})
}
fn strings() -> Value {
    json!({"type": "string"})
}

/// The one finding of `old → new` in `direction` (and none in the other).
fn only(old: &Value, new: &Value, direction: Direction) -> (String, K) {
    let found = check(old, new, Mode::Full).unwrap();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].direction, direction, "{found:#?}");
    (found[0].path.clone(), found[0].kind.clone())
}

/// Backward-only and forward-only checks agree with the one finding.
fn one_way(old: &Value, new: &Value, broken: Direction) -> (String, K) {
    let (ok_mode, bad_mode) = match broken {
        Direction::Backward => (Mode::Forward, Mode::Backward),
        Direction::Forward => (Mode::Backward, Mode::Forward),
    };
    assert_compatible(old, new, ok_mode);
    assert_incompatible(old, new, bad_mode);
    only(old, new, broken)
}

#[test]
fn a_schema_is_compatible_with_itself_under_every_mode() {
    let s = obj(
        &[
            ("a", u64s()),
            ("b", json!({"type": ["string", "null"]})),
            ("c", json!({"type": "array", "items": strings()})),
        ],
        &["a", "c"],
    );
    for mode in Mode::ALL {
        assert_compatible(&s, &s, mode);
    }
}

#[test]
fn changed_type() {
    let old = obj(&[("by", u64s())], &["by"]);
    let new = obj(&[("by", strings())], &["by"]);
    let found = check(&old, &new, Mode::Full).unwrap();
    assert_eq!(found.len(), 2);
    for (f, d) in found.iter().zip([Direction::Backward, Direction::Forward]) {
        assert_eq!((f.direction, f.path.as_str()), (d, "/by"));
    }
    assert_eq!(
        found[0].kind,
        K::TypeChanged {
            writer: "integer".into(),
            reader: "string".into()
        }
    );
    assert_eq!(
        found[0].to_string(),
        "backward /by: the writer may write integer here, the reader accepts only string"
    );
}

#[test]
fn integer_widened_to_number() {
    let (path, kind) = one_way(
        &json!({"type": "integer"}),
        &json!({"type": "number"}),
        Direction::Forward,
    );
    assert_eq!(path, "");
    assert_eq!(
        kind,
        K::TypeChanged {
            writer: "number".into(),
            reader: "integer".into()
        }
    );
}

#[test]
fn optional_property_added_is_full_compatible() {
    let old = obj(&[("a", u64s())], &["a"]);
    let new = obj(
        &[("a", u64s()), ("b", json!({"type": ["string", "null"]}))],
        &["a"],
    );
    assert_compatible(&old, &new, Mode::Full);
    assert_compatible(&new, &old, Mode::Full);
}

#[test]
fn required_property_added_breaks_backward() {
    let old = obj(&[("a", u64s())], &["a"]);
    let new = obj(&[("a", u64s()), ("b", strings())], &["a", "b"]);
    let (path, kind) = one_way(&old, &new, Direction::Backward);
    assert_eq!(path, "");
    assert_eq!(
        kind,
        K::RequiredPropertyAdded {
            property: "b".into()
        }
    );
}

#[test]
fn required_property_removed_breaks_forward() {
    let old = obj(&[("a", u64s()), ("b", strings())], &["a", "b"]);
    let new = obj(&[("a", u64s())], &["a"]);
    let (_, kind) = one_way(&old, &new, Direction::Forward);
    assert_eq!(
        kind,
        K::RequiredPropertyAdded {
            property: "b".into()
        }
    );
}

#[test]
fn optional_becomes_required() {
    let old = obj(&[("a", json!({"type": ["string", "null"]}))], &[]);
    let new = obj(&[("a", strings())], &["a"]);
    let found = check(&old, &new, Mode::Backward).unwrap();
    let kinds: Vec<(&str, &K)> = found.iter().map(|f| (f.path.as_str(), &f.kind)).collect();
    assert_eq!(
        kinds,
        [
            (
                "",
                &K::RequiredPropertyAdded {
                    property: "a".into()
                }
            ),
            (
                "/a",
                &K::TypeChanged {
                    writer: "null".into(),
                    reader: "string".into()
                }
            )
        ]
    );
    // The other way: the new writer always writes a string, the old reader takes one.
    assert_compatible(&old, &new, Mode::Forward);
}

#[test]
fn closed_reader_refuses_new_properties() {
    // `#[serde(deny_unknown_fields)]`: additionalProperties false.
    let mut old = obj(&[("a", u64s())], &["a"]);
    old["additionalProperties"] = json!(false);
    let new = obj(
        &[("a", u64s()), ("b", json!({"type": ["string", "null"]}))],
        &["a"],
    );
    let (path, kind) = one_way(&old, &new, Direction::Forward);
    assert_eq!(path, "");
    assert_eq!(
        kind,
        K::PropertyRefused {
            property: "b".into()
        }
    );
}

#[test]
fn enum_values_added_and_removed() {
    let ab = json!({"type": "string", "enum": ["A", "B"]});
    let abc = json!({"type": "string", "enum": ["A", "B", "C"]});
    let (_, kind) = one_way(&ab, &abc, Direction::Forward);
    assert_eq!(kind, K::ValueRefused { value: json!("C") });
    let (_, kind) = one_way(&abc, &ab, Direction::Backward);
    assert_eq!(kind, K::ValueRefused { value: json!("C") });
}

#[test]
fn const_changed() {
    let found = check(&json!({"const": 1}), &json!({"const": 2}), Mode::Full).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].kind, K::ValueRefused { value: json!(1) });
    assert_eq!(found[1].kind, K::ValueRefused { value: json!(2) });
    // 1 and 1.0 are the same number.
    assert_compatible(&json!({"const": 1}), &json!({"const": 1.0}), Mode::Full);
}

#[test]
fn string_restricted_to_values() {
    let (_, kind) = one_way(
        &strings(),
        &json!({"type": "string", "enum": ["low", "high"]}),
        Direction::Backward,
    );
    assert_eq!(
        kind,
        K::ValuesRestricted {
            writer: "string".into(),
            values: vec![json!("low"), json!("high")]
        }
    );
}

#[test]
fn integer_widths() {
    // u32 → u64 widens: backward fine, forward narrows.
    let (_, kind) = one_way(&u32s(), &u64s(), Direction::Forward);
    assert_eq!(
        kind,
        K::LimitNarrowed {
            keyword: "maximum".into(),
            writer: Some(u64::MAX.to_string()),
            reader: u32::MAX.to_string()
        }
    );
    // i32 → u32: negative values.
    let i32s = json!({"type": "integer", "format": "int32"});
    let found = check(&i32s, &u32s(), Mode::Backward).unwrap();
    assert!(
        found
            .iter()
            .any(|f| matches!(&f.kind, K::LimitNarrowed { keyword, .. } if keyword == "minimum")),
        "{found:?}"
    );
    // An explicit range inside the format's.
    let u8_small = json!({"type": "integer", "format": "uint8", "minimum": 1, "maximum": 5});
    let u8s = json!({"type": "integer", "format": "uint8", "minimum": 0, "maximum": 255});
    assert_compatible(&u8_small, &u8s, Mode::Backward);
    assert_incompatible(&u8_small, &u8s, Mode::Forward);
}

#[test]
fn number_bounds_exclusive_and_inclusive() {
    let incl = json!({"type": "number", "minimum": 0});
    let excl = json!({"type": "number", "exclusiveMinimum": 0});
    // Exclusive 0 is within inclusive 0, not the other way round.
    assert_compatible(&excl, &incl, Mode::Backward);
    let found = assert_incompatible(&incl, &excl, Mode::Backward);
    assert_eq!(
        found[0].kind,
        K::LimitNarrowed {
            keyword: "minimum".into(),
            writer: Some("0".into()),
            reader: "0 (exclusive)".into()
        }
    );
    // For integers, exclusive 0 is inclusive 1.
    assert_compatible(
        &json!({"type": "integer", "exclusiveMinimum": 0}),
        &json!({"type": "integer", "minimum": 1}),
        Mode::Full,
    );
    // Draft 4's boolean exclusiveMaximum.
    assert_compatible(
        &json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true}),
        &json!({"type": "integer", "maximum": 9}),
        Mode::Full,
    );
}

#[test]
fn formats() {
    let uuid = json!({"type": "string", "format": "uuid"});
    let (_, kind) = one_way(&strings(), &uuid, Direction::Backward);
    assert_eq!(
        kind,
        K::FormatChanged {
            writer: None,
            reader: "uuid".into()
        }
    );
    // ipv4 is within ip.
    assert_compatible(
        &json!({"type": "string", "format": "ipv4"}),
        &json!({"type": "string", "format": "ip"}),
        Mode::Backward,
    );
    // f64 read as f32.
    let f64s = json!({"type": "number", "format": "double"});
    let f32s = json!({"type": "number", "format": "float"});
    let (_, kind) = one_way(&f32s, &f64s, Direction::Forward);
    assert_eq!(
        kind,
        K::FormatChanged {
            writer: Some("double".into()),
            reader: "float".into()
        }
    );
}

#[test]
fn string_lengths_and_patterns() {
    let short = json!({"type": "string", "maxLength": 10});
    let long = json!({"type": "string", "maxLength": 20});
    let (_, kind) = one_way(&short, &long, Direction::Forward);
    assert_eq!(
        kind,
        K::LimitNarrowed {
            keyword: "maxLength".into(),
            writer: Some("20".into()),
            reader: "10".into()
        }
    );
    let (_, kind) = one_way(
        &strings(),
        &json!({"type": "string", "minLength": 1}),
        Direction::Backward,
    );
    assert!(matches!(kind, K::LimitNarrowed { keyword, .. } if keyword == "minLength"));
    let (_, kind) = one_way(
        &strings(),
        &json!({"type": "string", "pattern": "^[a-z]+$"}),
        Direction::Backward,
    );
    assert_eq!(
        kind,
        K::PatternChanged {
            writer: None,
            reader: "^[a-z]+$".into()
        }
    );
}

#[test]
fn arrays_items_uniqueness_and_tuples() {
    let tags = |items: Value| {
        obj(
            &[("tags", json!({"type": "array", "items": items}))],
            &["tags"],
        )
    };
    let found = check(&tags(strings()), &tags(u64s()), Mode::Backward).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "/tags/*");
    // A Vec became a set.
    let vec = json!({"type": "array", "items": strings()});
    let set = json!({"type": "array", "items": strings(), "uniqueItems": true});
    let (_, kind) = one_way(&vec, &set, Direction::Backward);
    assert_eq!(kind, K::UniqueItemsAdded);
    // Tuples (2020-12 prefixItems): a changed element, a changed length.
    let pair = |b: Value| json!({"type": "array", "prefixItems": [u64s(), b], "minItems": 2, "maxItems": 2});
    let found = check(&pair(strings()), &pair(u64s()), Mode::Backward).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "/1");
    let triple = json!({"type": "array", "prefixItems": [u64s(), strings(), strings()],
        "minItems": 3, "maxItems": 3});
    let found = check(&pair(strings()), &triple, Mode::Backward).unwrap();
    assert!(
        found
            .iter()
            .any(|f| matches!(&f.kind, K::LimitNarrowed { keyword, .. } if keyword == "minItems")),
        "{found:?}"
    );
    // A fixed-size array grew: old readers cannot take four elements.
    let fixed = |n: u64| json!({"type": "array", "items": u64s(), "minItems": n, "maxItems": n});
    assert_eq!(
        check(&fixed(3), &fixed(4), Mode::Full).unwrap().len(),
        2,
        "min one way, max the other"
    );
}

#[test]
fn draft_07_tuples_and_definitions() {
    let old = json!({
        "definitions": {"Id": {"type": "string"}},
        "type": "array",
        "items": [{"$ref": "#/definitions/Id"}, u64s()],
        "additionalItems": false
    });
    let new = json!({
        "definitions": {"Id": {"type": "integer"}},
        "type": "array",
        "items": [{"$ref": "#/definitions/Id"}, u64s()],
        "additionalItems": false
    });
    assert_compatible(&old, &old, Mode::FullTransitive);
    let found = check(&old, &new, Mode::Backward).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "/0");
}

fn tree(label: Value) -> Value {
    json!({
        "$ref": "#/$defs/Tree",
        "$defs": {"Tree": {"type": "object",
            "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}},
                           "label": label},
            "required": ["children", "label"]}}
    })
}

#[test]
fn recursive_types() {
    assert_compatible(&tree(strings()), &tree(strings()), Mode::Full);
    let found = check(&tree(strings()), &tree(u64s()), Mode::Backward).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "/label");
}

/// What schemars emits for `enum E { A, B, C(u32), D { x: String } }`.
fn external(d_x: Value, extra: Option<&str>) -> Value {
    let mut units = vec![json!("A"), json!("B")];
    if let Some(e) = extra {
        units.push(json!(e));
    }
    json!({"oneOf": [
        {"type": "string", "enum": units},
        {"type": "object", "properties": {"C": u32s()}, "required": ["C"], "additionalProperties": false},
        {"type": "object", "properties": {"D": obj(&[("x", d_x)], &["x"])}, "required": ["D"],
         "additionalProperties": false}
    ]})
}

#[test]
fn externally_tagged_enums() {
    assert_compatible(
        &external(strings(), None),
        &external(strings(), None),
        Mode::Full,
    );
    // A unit variant added: new readers read old data; old readers do not know it.
    let (_, kind) = one_way(
        &external(strings(), None),
        &external(strings(), Some("E")),
        Direction::Forward,
    );
    assert_eq!(kind, K::ValueRefused { value: json!("E") });
    // A variant's field changed: reported at the field, against the matching variant.
    let found = check(
        &external(strings(), None),
        &external(u64s(), None),
        Mode::Backward,
    )
    .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "/D/x");
}

#[test]
fn internally_tagged_and_untagged_enums() {
    let tagged = |b_x: Value| {
        json!({"oneOf": [
            {"type": "object", "properties": {"type": {"type": "string", "const": "A"}}, "required": ["type"]},
            {"type": "object", "properties": {"type": {"type": "string", "const": "B"}, "x": b_x},
             "required": ["type", "x"]}
        ]})
    };
    assert_compatible(&tagged(u32s()), &tagged(u64s()), Mode::Backward);
    let found = check(&tagged(u64s()), &tagged(u32s()), Mode::Backward).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "/x");
    // Untagged: anyOf.
    let either = json!({"anyOf": [u32s(), strings()]});
    assert_compatible(&u32s(), &either, Mode::Backward);
    let (_, kind) = one_way(&u32s(), &either, Direction::Forward);
    assert_eq!(
        kind,
        K::TypeChanged {
            writer: "string".into(),
            reader: "integer".into()
        }
    );
}

#[test]
fn nullable_and_type_arrays() {
    let openapi = json!({"type": "string", "nullable": true});
    let array = json!({"type": ["string", "null"]});
    let any_of = json!({"anyOf": [strings(), {"type": "null"}]});
    for (a, b) in [(&openapi, &array), (&array, &any_of), (&any_of, &openapi)] {
        assert_compatible(a, b, Mode::Full);
    }
    let (_, kind) = one_way(&strings(), &array, Direction::Forward);
    assert_eq!(
        kind,
        K::TypeChanged {
            writer: "null".into(),
            reader: "string".into()
        }
    );
}

#[test]
fn maps() {
    let map = |v: Value| json!({"type": "object", "additionalProperties": v});
    let found = check(&map(u32s()), &map(strings()), Mode::Backward).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "/*");
    // A map read by a closed struct.
    let mut closed = obj(&[("a", u32s())], &[]);
    closed["additionalProperties"] = json!(false);
    let found = check(&map(u32s()), &closed, Mode::Backward).unwrap();
    assert!(
        found.contains(&annals_contracts::Incompatibility::clone(
            found
                .iter()
                .find(|f| f.kind == K::AdditionalPropertiesRefused)
                .expect("refused")
        ))
    );
    // Integer keys (schemars' patternProperties): unsigned keys are within signed ones.
    let int_map = |pattern: &str, v: Value| json!({"type": "object", "additionalProperties": false, "patternProperties": {pattern: v}});
    assert_compatible(
        &int_map(r"^\d+$", u32s()),
        &int_map(r"^-?\d+$", u32s()),
        Mode::Backward,
    );
    let (_, kind) = one_way(
        &int_map(r"^\d+$", u32s()),
        &int_map(r"^-?\d+$", u32s()),
        Direction::Forward,
    );
    assert_eq!(
        kind,
        K::PropertyRefused {
            property: r"^-?\d+$".into()
        }
    );
    assert_eq!(
        check(
            &int_map(r"^\d+$", u32s()),
            &int_map(r"^\d+$", strings()),
            Mode::Backward
        )
        .unwrap()[0]
            .path,
        r"/^\d+$"
    );
}

#[test]
fn excluded_values() {
    // NonZeroI32: `not: {const: 0}`.
    let i32s = json!({"type": "integer", "format": "int32"});
    let nonzero = json!({"type": "integer", "format": "int32", "not": {"const": 0}});
    let (_, kind) = one_way(&i32s, &nonzero, Direction::Backward);
    assert_eq!(kind, K::ValueRefused { value: json!(0) });
    // A writer whose range leaves 0 out is fine.
    assert_compatible(
        &json!({"type": "integer", "format": "int32", "minimum": 1}),
        &nonzero,
        Mode::Backward,
    );
}

#[test]
fn refs_with_siblings_and_all_of() {
    // schemars: a documented field of a named type.
    let doc = |t: Value| {
        json!({"type": "object", "properties": {"k": {"$ref": "#/$defs/K", "description": "doc"}},
            "required": ["k"], "$defs": {"K": t}})
    };
    assert_compatible(&doc(strings()), &doc(strings()), Mode::Full);
    assert_eq!(
        check(&doc(strings()), &doc(u32s()), Mode::Backward).unwrap()[0].path,
        "/k"
    );
    // `allOf` of object parts (flatten): properties merged.
    let flat =
        |b: Value| json!({"allOf": [obj(&[("a", u32s())], &["a"]), obj(&[("b", b)], &["b"])]});
    assert_compatible(&flat(strings()), &flat(strings()), Mode::Full);
    let found = check(&flat(strings()), &flat(u32s()), Mode::Backward).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "/b");
}

#[test]
fn transitive_modes_check_every_pair() {
    // v1 has `a` as a string, v2 drops it, v3 brings it back as an integer.
    let v1 = obj(&[("id", u64s()), ("a", strings())], &["id", "a"]);
    let v2 = obj(&[("id", u64s())], &["id"]);
    let v3 = obj(
        &[("id", u64s()), ("a", json!({"type": ["integer", "null"]}))],
        &["id"],
    );
    let history = [(1, v1), (2, v2), (3, v3)];
    assert!(check_history(&history, Mode::Backward).unwrap().is_empty());
    let found = check_history(&history, Mode::BackwardTransitive).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].older, found[0].newer), (1, 3));
    assert_eq!(found[0].incompatibility.path, "/a");
    assert!(found[0].to_string().starts_with("v1 -> v3: backward /a: "));
    // Forward: v1's readers require `a`, which v2 and v3 leave out.
    let forward = check_history(&history, Mode::ForwardTransitive).unwrap();
    let pairs: Vec<(u32, u32)> = forward.iter().map(|f| (f.older, f.newer)).collect();
    // (1, 3): `a` may be left out, and may be an integer or null where v1 reads a string.
    assert_eq!(pairs, [(1, 2), (1, 3), (1, 3), (1, 3)]);
    assert_eq!(check_history(&history, Mode::Forward).unwrap().len(), 1);
    // Duplicated versions are an error, the order given is not.
    let reversed: Vec<_> = history.iter().rev().cloned().collect();
    assert_eq!(
        check_history(&reversed, Mode::FullTransitive).unwrap(),
        check_history(&history, Mode::FullTransitive).unwrap()
    );
    let twice = [history[0].clone(), history[0].clone()];
    assert!(matches!(
        check_history(&twice, Mode::Full),
        Err(ContractError::Duplicate {
            what: "version",
            ..
        })
    ));
}

#[test]
fn modes_parse_and_print() {
    for mode in Mode::ALL {
        assert_eq!(mode.to_string().parse::<Mode>().unwrap(), mode);
    }
    assert_eq!(
        "FULL_TRANSITIVE".parse::<Mode>().unwrap(),
        Mode::FullTransitive
    );
    let err = "sideways".parse::<Mode>().unwrap_err();
    assert!(err.to_string().contains("backward-transitive"), "{err}");
    assert!(Mode::FullTransitive.is_transitive() && !Mode::Full.is_transitive());
    assert_eq!(
        Mode::Full.directions(),
        [Direction::Backward, Direction::Forward]
    );
}

fn error_of(schema: Value) -> ContractError {
    let ok = json!({"type": "string"});
    let e = check(&ok, &schema, Mode::Full).unwrap_err();
    // Whichever side it is on.
    let f = check(&schema, &ok, Mode::Full).unwrap_err();
    assert_eq!(e.to_string(), f.to_string());
    e
}

#[test]
fn unsupported_constructs_are_typed_errors() {
    for (schema, keyword) in [
        (json!({"type": "string", "x-extension": 1}), "x-extension"),
        (
            json!({"if": {"type": "string"}, "then": {"minLength": 1}}),
            "if",
        ),
        (json!({"type": "integer", "multipleOf": 2}), "multipleOf"),
        (
            json!({"type": "object", "propertyNames": {"maxLength": 3}}),
            "propertyNames",
        ),
        (
            json!({"type": "object", "unevaluatedProperties": false}),
            "unevaluatedProperties",
        ),
        (json!({"not": {"type": "string"}}), "not"),
        (json!({"$ref": "other.json#/$defs/A"}), "$ref"),
        (
            json!({"type": "object", "patternProperties": {"^[a-z]+$": {}}}),
            "patternProperties",
        ),
        // Deep in an unreferenced definition: still found.
        (
            json!({"type": "string", "$defs": {"A": {"properties": {"b": {"contains": {}}}}}}),
            "contains",
        ),
    ] {
        match error_of(schema.clone()) {
            ContractError::Unsupported { keyword: k, .. } => assert_eq!(k, keyword, "{schema}"),
            other => panic!("{schema}: {other:?}"),
        }
    }
    let e = error_of(
        json!({"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 3}}}),
    );
    assert!(
        e.to_string()
            .starts_with("unsupported schema construct `multipleOf` at #/properties/a: "),
        "{e}"
    );
}

#[test]
fn malformed_schemas_are_typed_errors() {
    for schema in [
        json!({"type": 5}),
        json!({"type": "text"}),
        json!({"type": "object", "required": "a"}),
        json!({"type": "integer", "minimum": "0"}),
        json!({"anyOf": []}),
        json!({"type": "string", "maxLength": -1}),
        json!(7),
    ] {
        assert!(
            matches!(error_of(schema.clone()), ContractError::Invalid { .. }),
            "{schema}"
        );
    }
    assert!(matches!(
        error_of(json!({"$ref": "#/$defs/Missing"})),
        ContractError::UnresolvedRef { .. }
    ));
    // A reference chain that never reaches a schema.
    assert!(matches!(
        error_of(
            json!({"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}}})
        ),
        ContractError::Limit { .. }
    ));
}

#[test]
fn values_against_schemas() {
    let s = obj(
        &[
            (
                "n",
                json!({"type": "integer", "format": "uint8", "minimum": 0, "maximum": 255}),
            ),
            (
                "tags",
                json!({"type": "array", "items": strings(), "uniqueItems": true}),
            ),
            ("id", json!({"type": "string", "format": "uuid"})),
        ],
        &["n"],
    );
    assert_eq!(
        accepts(&s, &json!({"n": 1, "tags": ["a", "b"]})).unwrap(),
        Some(true)
    );
    assert_eq!(accepts(&s, &json!({"n": 1.5})).unwrap(), Some(false));
    assert_eq!(
        accepts(&s, &json!({"n": 1, "tags": ["a", "a"]})).unwrap(),
        Some(false)
    );
    // Formats are not evaluated on values.
    assert_eq!(accepts(&s, &json!({"n": 1, "id": "x"})).unwrap(), None);
    assert_eq!(
        accepts(
            &tree(strings()),
            &json!({"children": [{"children": [], "label": "b"}], "label": "a"})
        )
        .unwrap(),
        Some(true)
    );
    assert_eq!(
        accepts(
            &tree(strings()),
            &json!({"children": [{"children": []}], "label": "a"})
        )
        .unwrap(),
        Some(false)
    );
}

#[test]
fn pathological_documents_are_limits_not_crashes() {
    // A chain of 1,000 distinct definitions, each an object holding the next.
    let mut defs = serde_json::Map::new();
    for i in 0..1000 {
        defs.insert(
            format!("T{i}"),
            json!({"type": "object", "properties": {"next": {"$ref": format!("#/$defs/T{}", i + 1)}}}),
        );
    }
    defs.insert("T1000".into(), json!({"type": "string"}));
    let deep = json!({"$ref": "#/$defs/T0", "$defs": defs});
    assert!(matches!(
        check(&deep, &deep, Mode::Full),
        Err(ContractError::Limit { .. })
    ));
    // Nesting in one document, without references.
    let mut nested = json!({"type": "string"});
    for _ in 0..1000 {
        nested = json!({"type": "array", "items": nested});
    }
    assert!(matches!(
        check(&nested, &nested, Mode::Full),
        Err(ContractError::Limit { .. })
    ));
}

#[test]
fn modes_serialize_by_name() {
    assert_eq!(
        serde_json::to_value(Mode::BackwardTransitive).unwrap(),
        json!("backward-transitive")
    );
    let m: Mode = serde_json::from_value(json!("full")).unwrap();
    assert_eq!(m, Mode::Full);
}

#[test]
fn wide_nested_enums_are_compared_quickly() {
    // 60 variants, each holding a field of another 60-variant enum: the inner comparison is
    // made once per pair of definitions, not once per pair of outer variants.
    let inner: Vec<Value> = (0..60)
        .map(|i| {
            json!({"type": "object", "properties": {format!("I{i}"): u32s()},
            "required": [format!("I{i}")], "additionalProperties": false})
        })
        .collect();
    let outer: Vec<Value> = (0..60)
        .map(|i| {
            json!({"type": "object", "properties": {format!("O{i}"): {"$ref": "#/$defs/Inner"}},
            "required": [format!("O{i}")], "additionalProperties": false})
        })
        .collect();
    let doc = json!({"oneOf": outer, "$defs": {"Inner": {"oneOf": inner}}});
    let started = std::time::Instant::now();
    assert_compatible(&doc, &doc, Mode::FullTransitive);
    let mut changed = doc.clone();
    changed["$defs"]["Inner"]["oneOf"][7]["properties"]["I7"] = strings();
    let found = check(&doc, &changed, Mode::Backward).unwrap();
    assert_eq!(found.len(), 60, "one per outer variant");
    assert!(found.iter().all(|f| f.path.ends_with("/I7")), "{found:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
