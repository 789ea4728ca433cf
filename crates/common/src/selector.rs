//! Kubernetes label selectors (`a=b,c!=d,e in (f,g),h notin (i),j,!k`),
//! matched in-process: the collector narrows its one set of watches per
//! subscriber with them, and the coordinator matches the PodDisruptionBudget
//! selectors a snapshot carries (in this string form) against a pod's labels.

use std::collections::{BTreeMap, HashMap};

/// A set of labels a selector can be matched against.
pub trait Labels {
    /// The value of `key`, if the label is there.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Equality labels in selector syntax, in key order: `app=api,tier=web`
/// (a Service's selector, a pod template's labels).
pub fn equality_text<'l>(labels: impl IntoIterator<Item = (&'l String, &'l String)>) -> String {
    let sorted: BTreeMap<&String, &String> = labels.into_iter().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// Parses the string form Kubernetes accepts.
    ///
    /// # Errors
    /// A message naming the requirement that does not parse.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self { requirements })
    }

    /// True when every requirement holds for `labels`.
    pub fn matches(&self, labels: &impl Labels) -> bool {
        let has = |values: &[String], v: &str| values.iter().any(|x| x == v);
        self.requirements.iter().all(|r| match r {
            Requirement::In(key, values) => labels.label(key).is_some_and(|v| has(values, v)),
            Requirement::NotIn(key, values) => labels.label(key).is_none_or(|v| !has(values, v)),
            Requirement::Exists(key) => labels.label(key).is_some(),
            Requirement::DoesNotExist(key) => labels.label(key).is_none(),
        })
    }

    /// True when the selector has no requirements.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let bad = |why: &str| format!("label selector requirement {part:?}: {why}");
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(
            key_of(key.trim()).map_err(|e| bad(&e))?,
        ));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotIn(
            key_of(key.trim()).map_err(|e| bad(&e))?,
            vec![value_of(value.trim()).map_err(|e| bad(&e))?],
        ));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::In(
            key_of(key.trim()).map_err(|e| bad(&e))?,
            vec![value_of(value.trim()).map_err(|e| bad(&e))?],
        ));
    }
    let words: Vec<&str> = part.splitn(3, char::is_whitespace).collect();
    match words.as_slice() {
        [key] => Ok(Requirement::Exists(key_of(key).map_err(|e| bad(&e))?)),
        [key, op, rest] => {
            let set = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| bad("expected a parenthesised value list"))?;
            let values = set
                .split(',')
                .map(|v| value_of(v.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(&e))?;
            let key = key_of(key).map_err(|e| bad(&e))?;
            match *op {
                "in" => Ok(Requirement::In(key, values)),
                "notin" => Ok(Requirement::NotIn(key, values)),
                _ => Err(bad("operator must be =, ==, !=, in or notin")),
            }
        }
        _ => Err(bad("operator must be =, ==, !=, in or notin")),
    }
}

fn key_of(key: &str) -> Result<String, String> {
    let valid = !key.is_empty()
        && key.len() <= 316
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn value_of(value: &str) -> Result<String, String> {
    let valid = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_operator_matches_as_kubernetes_does() -> Result<(), String> {
        let shop = labels(&[("app", "shop"), ("tier", "web")]);
        let cases = [
            ("", true),
            ("app=shop", true),
            ("app==shop", true),
            ("app=cart", false),
            ("app!=cart", true),
            ("missing!=x", true),
            ("tier in (web, api)", true),
            ("tier notin (web)", false),
            ("missing notin (web)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=shop,tier in (api)", false),
        ];
        for (text, expected) in cases {
            assert_eq!(Selector::parse(text)?.matches(&shop), expected, "{text}");
        }
        Ok(())
    }

    #[test]
    fn malformed_selectors_name_the_requirement() {
        for text in [
            "app in web",
            "tier between (a)",
            "a=b c",
            "=x",
            "app=sh op!",
        ] {
            let error = Selector::parse(text).expect_err(text);
            assert!(
                error.contains("label selector requirement"),
                "{text}: {error}"
            );
        }
    }
}
