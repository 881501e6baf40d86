//! Flattening `json_val` and `json_ietf_val` into one value per leaf path.
//!
//! A JSON value sent for path `p` becomes samples as follows:
//!
//! - **Scalars** are the value of `p`. Numbers become `Uint`, `Int` or `Float` (the first
//!   that holds them); `true`/`false` become `Bool`; strings stay text, except in
//!   JSON_IETF, where RFC 7951 writes 64-bit integers and `decimal64` as JSON strings: a
//!   plain decimal integer string (`"42"`, `"-7"`; no `+`, no leading zeros) becomes
//!   `Int`/`Uint`, and a plain decimal fraction (`"12.50"`) becomes `Decimal`, so counters
//!   and sensor readings chart. (Without a YANG schema a `string` leaf that happens to
//!   hold such text is read as a number too; its text is still shown the same way.)
//! - **Objects** are containers: member `m` continues at `p/m`. A module prefix on a
//!   member name (`"openconfig-interfaces:interfaces"`) is dropped, because RFC 7951 puts
//!   it only where the module changes, so the same node would otherwise get different
//!   paths depending on where the JSON starts. Members starting with `@` are RFC 7951
//!   metadata annotations, not data, and are skipped. An empty object gives no sample.
//! - **Arrays of scalars** are leaf-lists: one `LeafList` value at `p` (`[]` included).
//! - **Arrays of objects** are YANG lists: entry `e` continues at `p` with keys added to
//!   its last element. The keys are the list's YANG keys when netpulse knows them
//!   ([`KNOWN_LIST_KEYS`], the common OpenConfig lists) and every entry carries them as
//!   scalar members; else `name`, when every entry has a scalar `name` member (the key of
//!   most OpenConfig lists); else the entry's position, `[index=N]` from 0. Keys must
//!   also be distinct across entries, else positions are used. Key members remain leaves
//!   of their entry, as in YANG.
//! - `[null]` is RFC 7951's value of a leaf of type `empty`, which is present: it reads
//!   as `Bool(true)`.
//!
//! Text that is not JSON, a bare `null`, `null` inside a leaf-list, arrays of arrays,
//! arrays mixing objects and scalars, lists at the root path, and member names that cannot
//! be path elements (empty, or holding `/ [ ] =`) are errors. An error inside one member
//! fails that member's subtree only; its siblings still give samples.

use model::{Path, PathElem, Value};
use serde_json::{Map, Value as Json};

use crate::notification::DecodeError;

/// YANG keys of common OpenConfig lists, by list name.
pub const KNOWN_LIST_KEYS: &[(&str, &[&str])] = &[
    ("interface", &["name"]),
    ("subinterface", &["index"]),
    ("network-instance", &["name"]),
    ("protocol", &["identifier", "name"]),
    ("neighbor", &["neighbor-address"]),
    ("peer-group", &["peer-group-name"]),
    ("afi-safi", &["afi-safi-name"]),
    ("component", &["name"]),
    ("address", &["ip"]),
    ("vlan", &["vlan-id"]),
    ("queue", &["name"]),
    ("static", &["prefix"]),
    ("next-hop", &["index"]),
    ("member", &["interface"]),
    ("aggregate", &["prefix"]),
];

/// The key used when a list entry has no known key: its position in the array, from 0.
pub const INDEX_KEY: &str = "index";

/// Flattens `bytes`, the JSON value of `path`, into `out`; problems go to `errors`.
pub(crate) fn flatten(
    path: &Path,
    bytes: &[u8],
    ietf: bool,
    out: &mut Vec<(Path, Value)>,
    errors: &mut Vec<DecodeError>,
) {
    match serde_json::from_slice::<Json>(bytes) {
        Ok(json) => Flattener { ietf, out, errors }.node(path, &json),
        Err(e) => errors.push(DecodeError::new(path, format!("malformed JSON: {e}"))),
    }
}

struct Flattener<'a> {
    ietf: bool,
    out: &'a mut Vec<(Path, Value)>,
    errors: &'a mut Vec<DecodeError>,
}

impl Flattener<'_> {
    fn fail(&mut self, path: &Path, reason: impl Into<String>) {
        self.errors.push(DecodeError::new(path, reason));
    }

    fn node(&mut self, path: &Path, json: &Json) {
        match json {
            Json::Object(members) => self.container(path, members),
            Json::Array(items) => self.array(path, items),
            Json::Null => self.fail(path, "null is not a value"),
            scalar => match scalar_value(scalar, self.ietf) {
                Some(v) => self.out.push((path.clone(), v)),
                None => self.fail(path, "unreadable JSON scalar"),
            },
        }
    }

    fn container(&mut self, path: &Path, members: &Map<String, Json>) {
        for (name, json) in members {
            if name.starts_with('@') {
                continue;
            }
            let name = strip_module(name);
            if let Err(reason) = check_elem_name(name) {
                self.fail(path, reason);
                continue;
            }
            let mut child = path.clone();
            child.elems.push(PathElem::new(name));
            self.node(&child, json);
        }
    }

    fn array(&mut self, path: &Path, items: &[Json]) {
        if let [Json::Null] = items {
            self.out.push((path.clone(), Value::Bool(true)));
            return;
        }
        if items.iter().any(Json::is_array) {
            return self.fail(path, "arrays of arrays are not YANG data");
        }
        let objects: Vec<&Map<String, Json>> = items.iter().filter_map(Json::as_object).collect();
        if objects.is_empty() {
            let mut values = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Json::Null => return self.fail(path, "null inside a leaf-list"),
                    scalar => match scalar_value(scalar, self.ietf) {
                        Some(v) => values.push(v),
                        None => return self.fail(path, "unreadable JSON scalar in a leaf-list"),
                    },
                }
            }
            self.out.push((path.clone(), Value::LeafList(values)));
        } else if objects.len() != items.len() {
            self.fail(path, "array mixes objects and scalars")
        } else if path.elems.is_empty() {
            self.fail(
                path,
                "a list needs a name, but this one is at the root path",
            )
        } else {
            self.list(path, &objects)
        }
    }

    fn list(&mut self, path: &Path, entries: &[&Map<String, Json>]) {
        let keys = entry_keys(path.leaf(), entries, self.ietf);
        for (i, entry) in entries.iter().enumerate() {
            let mut at = path.clone();
            if let Some(last) = at.elems.last_mut() {
                match &keys {
                    Some(keys) => last.keys.extend(keys[i].iter().cloned()),
                    None => {
                        last.keys.insert(INDEX_KEY.to_owned(), i.to_string());
                    }
                }
            }
            self.container(&at, entry);
        }
    }
}

/// The keys of each entry of list `list`, or `None` for positions (see the module docs).
fn entry_keys(
    list: &str,
    entries: &[&Map<String, Json>],
    ietf: bool,
) -> Option<Vec<Vec<(String, String)>>> {
    let known = KNOWN_LIST_KEYS
        .iter()
        .find(|(name, _)| *name == list)
        .map(|(_, keys)| *keys);
    let candidates: &[&[&str]] = match known {
        Some(keys) => &[keys, &["name"]],
        None => &[&["name"]],
    };
    candidates
        .iter()
        .find_map(|names| keys_from(names, entries, ietf))
}

fn keys_from(
    names: &[&str],
    entries: &[&Map<String, Json>],
    ietf: bool,
) -> Option<Vec<Vec<(String, String)>>> {
    let mut all = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut keys = Vec::with_capacity(names.len());
        for name in names {
            let member = entry
                .iter()
                .find(|(m, _)| strip_module(m) == *name)
                .map(|(_, v)| v)?;
            keys.push(((*name).to_owned(), key_text(member, ietf)?));
        }
        all.push(keys);
    }
    let mut sorted: Vec<&Vec<(String, String)>> = all.iter().collect();
    sorted.sort();
    sorted.dedup();
    (sorted.len() == all.len()).then_some(all)
}

/// A key leaf's value as path text: strings as they are, numbers and booleans as JSON
/// writes them.
fn key_text(json: &Json, ietf: bool) -> Option<String> {
    match json {
        Json::String(s) => Some(s.clone()),
        Json::Number(_) | Json::Bool(_) => scalar_value(json, ietf).map(|v| v.to_string()),
        Json::Null | Json::Array(_) | Json::Object(_) => None,
    }
}

/// `module:name` -> `name`.
fn strip_module(name: &str) -> &str {
    name.split_once(':').map_or(name, |(_, local)| local)
}

fn check_elem_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("JSON member with an empty name".to_owned())
    } else if name.contains(['/', '[', ']', '=']) {
        Err(format!(
            "JSON member name {name:?} cannot be a path element (contains one of / [ ] =)"
        ))
    } else {
        Ok(())
    }
}

/// A JSON scalar (not null) as a value; see the module docs for the IETF string rule.
pub(crate) fn scalar_value(json: &Json, ietf: bool) -> Option<Value> {
    match json {
        Json::Bool(b) => Some(Value::Bool(*b)),
        Json::Number(n) => n
            .as_u64()
            .map(Value::Uint)
            .or_else(|| n.as_i64().map(Value::Int))
            .or_else(|| n.as_f64().map(Value::Float)),
        Json::String(s) if ietf => Some(ietf_number(s).unwrap_or_else(|| Value::String(s.clone()))),
        Json::String(s) => Some(Value::String(s.clone())),
        Json::Null | Json::Array(_) | Json::Object(_) => None,
    }
}

/// A plain decimal integer (`0`, `42`, `-7`) or fraction (`1.50`, `-0.5`): no `+`, no
/// leading zeros before the point, no exponent, no spaces.
fn ietf_number(s: &str) -> Option<Value> {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (unsigned, None),
    };
    let plain = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || !int.starts_with('0'));
    if !plain {
        return None;
    }
    match frac {
        Some(_) => Value::parse_decimal(s),
        None if s.starts_with('-') => s.parse().ok().map(Value::Int),
        None => s.parse().ok().map(Value::Uint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(json: &str, ietf: bool) -> (Vec<(String, Value)>, Vec<String>) {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let base: Path = "/base".parse().expect("test value");
        flatten(&base, json.as_bytes(), ietf, &mut out, &mut errors);
        // Sorted: member order depends on serde_json's `preserve_order` feature.
        let mut out: Vec<(String, Value)> =
            out.into_iter().map(|(p, v)| (p.to_string(), v)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let mut errors: Vec<String> = errors.into_iter().map(|e| e.to_string()).collect();
        errors.sort();
        (out, errors)
    }

    fn leaves(json: &str) -> Vec<(String, Value)> {
        let (out, errors) = flat(json, true);
        assert!(errors.is_empty(), "{json}: {errors:?}");
        out
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[test]
    fn nested_containers_become_one_leaf_each() {
        assert_eq!(
            leaves(
                r#"{"openconfig-interfaces:state": {"counters": {"in-octets": "9000000000",
                    "in-errors": 0}, "oper-status": "UP", "mtu": 1500, "enabled": true,
                    "@oper-status": {"ietf-origin:origin": "x"}}, "empty": {}}"#
            ),
            vec![
                ("/base/state/counters/in-errors".into(), Value::Uint(0)),
                (
                    "/base/state/counters/in-octets".into(),
                    Value::Uint(9_000_000_000)
                ),
                ("/base/state/enabled".into(), Value::Bool(true)),
                ("/base/state/mtu".into(), Value::Uint(1500)),
                ("/base/state/oper-status".into(), s("UP")),
            ]
        );
    }

    #[test]
    fn lists_of_objects_are_keyed() {
        // Known keys (protocol has two), `name` for unknown lists, positions otherwise.
        assert_eq!(
            leaves(
                r#"{"interface": [{"name": "eth1/1", "mtu": 9000}, {"name": "eth2"}],
                    "protocol": [{"identifier": "BGP", "name": "bgp", "x": 1}],
                    "thing": [{"name": "a"}],
                    "entry": [{"v": 1}, {"v": 2}],
                    "dup": [{"name": "a", "v": 1}, {"name": "a", "v": 2}],
                    "subinterface": [{"index": 0}]}"#
            ),
            vec![
                ("/base/dup[index=0]/name".into(), s("a")),
                ("/base/dup[index=0]/v".into(), Value::Uint(1)),
                ("/base/dup[index=1]/name".into(), s("a")),
                ("/base/dup[index=1]/v".into(), Value::Uint(2)),
                ("/base/entry[index=0]/v".into(), Value::Uint(1)),
                ("/base/entry[index=1]/v".into(), Value::Uint(2)),
                ("/base/interface[name=eth1/1]/mtu".into(), Value::Uint(9000)),
                ("/base/interface[name=eth1/1]/name".into(), s("eth1/1")),
                ("/base/interface[name=eth2]/name".into(), s("eth2")),
                (
                    "/base/protocol[identifier=BGP][name=bgp]/identifier".into(),
                    s("BGP")
                ),
                (
                    "/base/protocol[identifier=BGP][name=bgp]/name".into(),
                    s("bgp")
                ),
                (
                    "/base/protocol[identifier=BGP][name=bgp]/x".into(),
                    Value::Uint(1)
                ),
                ("/base/subinterface[index=0]/index".into(), Value::Uint(0)),
                ("/base/thing[name=a]/name".into(), s("a")),
            ]
        );
    }

    #[test]
    fn leaf_lists_and_empty_leaves() {
        assert_eq!(
            leaves(r#"{"a": ["x", "5", 2, false], "b": [], "c": [null]}"#),
            vec![
                (
                    "/base/a".into(),
                    Value::LeafList(vec![
                        s("x"),
                        Value::Uint(5),
                        Value::Uint(2),
                        Value::Bool(false)
                    ])
                ),
                ("/base/b".into(), Value::LeafList(vec![])),
                ("/base/c".into(), Value::Bool(true)),
            ]
        );
    }

    #[test]
    fn ietf_numbers_as_strings() {
        for (json, want) in [
            (r#""18446744073709551615""#, Value::Uint(u64::MAX)),
            (r#""-9223372036854775808""#, Value::Int(i64::MIN)),
            (r#""0""#, Value::Uint(0)),
            (
                r#""12.50""#,
                Value::Decimal {
                    digits: 1250,
                    precision: 2,
                },
            ),
            (
                r#""-0.5""#,
                Value::Decimal {
                    digits: -5,
                    precision: 1,
                },
            ),
            (r#""007""#, s("007")),
            (r#""+1""#, s("+1")),
            (r#""1e3""#, s("1e3")),
            (r#""1.""#, s("1.")),
            (r#""99999999999999999999""#, s("99999999999999999999")),
            (r#""UP""#, s("UP")),
            ("-1", Value::Int(-1)),
            ("0.25", Value::Float(0.25)),
        ] {
            assert_eq!(leaves(json), vec![("/base".into(), want)], "{json}");
        }
        // Plain JSON keeps every string as text.
        let (out, _) = flat(r#""42""#, false);
        assert_eq!(out, vec![("/base".into(), s("42"))]);
    }

    #[test]
    fn malformed_json_and_non_yang_shapes_are_errors() {
        for (json, reason) in [
            ("{", "malformed JSON"),
            ("", "malformed JSON"),
            ("not json", "malformed JSON"),
            ("null", "null is not a value"),
            ("[1, null]", "null inside a leaf-list"),
            ("[[1]]", "arrays of arrays"),
            (r#"[{"a": 1}, 2]"#, "mixes objects and scalars"),
            (r#"{"": 1}"#, "empty name"),
            (r#"{"a/b": 1}"#, "cannot be a path element"),
        ] {
            let (_, errors) = flat(json, true);
            assert_eq!(errors.len(), 1, "{json}: {errors:?}");
            assert!(errors[0].contains(reason), "{json}: {errors:?}");
            assert!(errors[0].starts_with("/base"), "{json}: {errors:?}");
        }
    }

    #[test]
    fn an_error_fails_only_its_own_subtree() {
        let (out, errors) = flat(r#"{"good": 1, "bad": null, "also": {"x": [[]]}}"#, true);
        assert_eq!(out, vec![("/base/good".into(), Value::Uint(1))]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("/base/also/x: "), "{errors:?}");
        assert!(errors[1].starts_with("/base/bad: "), "{errors:?}");
    }

    #[test]
    fn a_list_at_the_root_is_an_error() {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        flatten(
            &Path::default(),
            br#"[{"name": "a"}]"#,
            true,
            &mut out,
            &mut errors,
        );
        assert!(out.is_empty());
        assert!(errors[0].to_string().contains("root"), "{errors:?}");
    }
}
