//! `gnmi::Path` <-> `model::Path`.

use std::fmt::Write as _;

use model::{Path, PathElem};

use crate::{Error, Result, gnmi};

/// Characters that cannot appear in element or key names of the canonical path form.
const RESERVED: [char; 4] = ['/', '[', ']', '='];

impl TryFrom<&gnmi::Path> for Path {
    type Error = Error;

    /// Reads the structured `elem` list, or, when it is empty, the deprecated `element`
    /// strings (each parsed as one element, keys included, as old targets send them).
    /// The `target` field names a device, not a node, and is not part of the result.
    fn try_from(path: &gnmi::Path) -> Result<Path> {
        #[allow(deprecated)]
        let legacy = &path.element;
        let elems = if path.elem.is_empty() && !legacy.is_empty() {
            legacy
                .iter()
                .map(|element| legacy_elem(path, element))
                .collect::<Result<Vec<_>>>()?
        } else {
            path.elem
                .iter()
                .map(|elem| structured_elem(path, elem))
                .collect::<Result<Vec<_>>>()?
        };
        if path.origin.contains([':', '/']) {
            return Err(invalid(
                path,
                format!("origin {:?} contains ':' or '/'", path.origin),
            ));
        }
        Ok(Path {
            origin: path.origin.clone(),
            elems,
        })
    }
}

impl From<&Path> for gnmi::Path {
    fn from(path: &Path) -> Self {
        gnmi::Path {
            origin: path.origin.clone(),
            elem: path
                .elems
                .iter()
                .map(|e| gnmi::PathElem {
                    name: e.name.clone(),
                    key: e.keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// The full path of an update: `prefix` joined with `path` (see [`model::Path::join`]).
/// Either may be absent, as in gNMI messages; both absent is the root.
pub fn full_path(prefix: Option<&gnmi::Path>, path: Option<&gnmi::Path>) -> Result<Path> {
    let prefix = prefix.map(Path::try_from).transpose()?.unwrap_or_default();
    match path {
        Some(path) => Ok(prefix.join(&Path::try_from(path)?)),
        None => Ok(prefix),
    }
}

fn structured_elem(path: &gnmi::Path, elem: &gnmi::PathElem) -> Result<PathElem> {
    check_name(path, "element", &elem.name)?;
    let mut out = PathElem::new(elem.name.clone());
    for (k, v) in &elem.key {
        check_name(path, "key", k)?;
        out.keys.insert(k.clone(), v.clone());
    }
    Ok(out)
}

fn legacy_elem(path: &gnmi::Path, element: &str) -> Result<PathElem> {
    let parsed: Path = format!("/{element}")
        .parse()
        .map_err(|e: model::PathError| {
            invalid(path, format!("element {element:?}: {}", e.reason))
        })?;
    let mut elems = parsed.elems;
    match (elems.pop(), elems.is_empty()) {
        (Some(elem), true) => Ok(elem),
        _ => Err(invalid(
            path,
            format!("element {element:?} is not exactly one path element"),
        )),
    }
}

fn check_name(path: &gnmi::Path, what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(path, format!("empty {what} name")));
    }
    if name.contains(RESERVED) {
        return Err(invalid(
            path,
            format!("{what} name {name:?} contains one of / [ ] ="),
        ));
    }
    Ok(())
}

fn invalid(path: &gnmi::Path, reason: String) -> Error {
    Error::InvalidPath {
        path: describe(path),
        reason,
    }
}

/// A best-effort human rendering of a path that may not be valid.
fn describe(path: &gnmi::Path) -> String {
    let mut out = String::new();
    if !path.origin.is_empty() {
        let _ = write!(out, "{}:", path.origin);
    }
    #[allow(deprecated)]
    let legacy = &path.element;
    if path.elem.is_empty() {
        for element in legacy {
            let _ = write!(out, "/{element}");
        }
    }
    for elem in &path.elem {
        let _ = write!(out, "/{}", elem.name);
        let mut keys: Vec<_> = elem.key.iter().collect();
        keys.sort();
        for (k, v) in keys {
            let _ = write!(out, "[{k}={v}]");
        }
    }
    if out.is_empty() || out.ends_with(':') {
        out.push('/');
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;

    pub(crate) fn elem(name: &str, keys: &[(&str, &str)]) -> gnmi::PathElem {
        gnmi::PathElem {
            name: name.into(),
            key: keys
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect::<HashMap<_, _>>(),
        }
    }

    pub(crate) fn gpath(origin: &str, elems: Vec<gnmi::PathElem>) -> gnmi::Path {
        gnmi::Path {
            origin: origin.into(),
            elem: elems,
            ..Default::default()
        }
    }

    #[test]
    fn structured_paths_convert_with_keys_and_origin() {
        let p = gpath(
            "openconfig",
            vec![
                elem("interfaces", &[]),
                elem("interface", &[("name", "Ethernet1/1")]),
                elem("state", &[]),
            ],
        );
        let m = Path::try_from(&p).unwrap();
        assert_eq!(
            m.to_string(),
            "openconfig:/interfaces/interface[name=Ethernet1/1]/state"
        );
        assert_eq!(gnmi::Path::from(&m), p);
    }

    #[test]
    fn model_paths_round_trip_through_the_wire_form() {
        for s in [
            "/",
            "/interfaces/interface[name=*]/state/counters",
            "cli:/show/version",
            "/p/protocol[identifier=BGP][name=bgp]/x",
            "/a/b[k=with\\]bracket]",
            "/a/.../b",
            "/a/*/b[k=*]",
        ] {
            let m: Path = s.parse().unwrap();
            let back = Path::try_from(&gnmi::Path::from(&m)).unwrap();
            assert_eq!(back, m, "{s}");
        }
    }

    #[test]
    fn legacy_element_strings_are_parsed_one_element_each() {
        #[allow(deprecated)]
        let p = gnmi::Path {
            element: vec![
                "interfaces".into(),
                "interface[name=Ethernet1/1]".into(),
                "state".into(),
            ],
            ..Default::default()
        };
        assert_eq!(
            Path::try_from(&p).unwrap().to_string(),
            "/interfaces/interface[name=Ethernet1/1]/state"
        );
        #[allow(deprecated)]
        let two = gnmi::Path {
            element: vec!["a/b".into()],
            ..Default::default()
        };
        let err = Path::try_from(&two).unwrap_err();
        assert!(err.to_string().contains("not exactly one"), "{err}");
        #[allow(deprecated)]
        let broken = gnmi::Path {
            element: vec!["a[k=v".into()],
            ..Default::default()
        };
        let err = Path::try_from(&broken).unwrap_err();
        assert!(err.to_string().contains("unterminated"), "{err}");
    }

    #[test]
    fn structured_elem_wins_over_legacy_element() {
        #[allow(deprecated)]
        let p = gnmi::Path {
            element: vec!["old".into()],
            elem: vec![elem("new", &[])],
            ..Default::default()
        };
        assert_eq!(Path::try_from(&p).unwrap().to_string(), "/new");
    }

    #[test]
    fn reserved_or_empty_names_are_rejected() {
        for (bad, reason) in [
            (gpath("", vec![elem("", &[])]), "empty element name"),
            (gpath("", vec![elem("a/b", &[])]), "contains one of"),
            (gpath("", vec![elem("a", &[("", "v")])]), "empty key name"),
            (
                gpath("", vec![elem("a", &[("k]", "v")])]),
                "contains one of",
            ),
            (gpath("a:b", vec![elem("a", &[])]), "origin \"a:b\""),
            (gpath("a/b", vec![]), "origin \"a/b\""),
        ] {
            let err = Path::try_from(&bad).unwrap_err();
            assert!(err.to_string().contains(reason), "{err}");
        }
    }

    #[test]
    fn full_path_joins_prefix_and_path() {
        let prefix = gpath(
            "openconfig",
            vec![
                elem("interfaces", &[]),
                elem("interface", &[("name", "Ethernet1")]),
                elem("state", &[]),
            ],
        );
        let rel = gpath("", vec![elem("counters", &[]), elem("in-octets", &[])]);
        assert_eq!(
            full_path(Some(&prefix), Some(&rel)).unwrap().to_string(),
            "openconfig:/interfaces/interface[name=Ethernet1]/state/counters/in-octets"
        );
        assert_eq!(
            full_path(None, Some(&rel)).unwrap().to_string(),
            "/counters/in-octets"
        );
        assert_eq!(
            full_path(Some(&prefix), None).unwrap().to_string(),
            "openconfig:/interfaces/interface[name=Ethernet1]/state"
        );
        assert_eq!(full_path(None, None).unwrap(), Path::default());
        let bad = gpath("", vec![elem("", &[])]);
        assert!(full_path(Some(&bad), Some(&rel)).is_err());
    }
}
