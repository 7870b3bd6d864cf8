//! JSON reading that refuses duplicate object keys.
//!
//! `serde_json::Value` keeps the last of two equal keys. For a policy that is a trap: a reviewer
//! reads `"Effect": "Deny"` first while the evaluator honours a later `"Effect": "Allow"`. Refusing
//! the document removes the ambiguity.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `text` as one JSON value, failing on duplicate keys at any depth.
pub(crate) fn parse(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict>(text).map(|strict| strict.0)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ordinary_json() {
        let value = parse(r#"{"a": [1, -2, 2.5, true, null, "s"], "b": {}}"#).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"a": [1, -2, 2.5, true, null, "s"], "b": {}})
        );
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        let top = parse(r#"{"Effect": "Deny", "Effect": "Allow"}"#)
            .unwrap_err()
            .to_string();
        assert!(top.contains("duplicate key \"Effect\""), "{top}");
        let nested = parse(r#"{"a": [{"k": 1, "k": 1}]}"#).unwrap_err().to_string();
        assert!(nested.contains("duplicate key \"k\""), "{nested}");
    }

    #[test]
    fn refuses_trailing_garbage() {
        assert!(parse(r#"{"a": 1} x"#).is_err());
    }
}
