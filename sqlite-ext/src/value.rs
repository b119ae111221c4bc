//! SQLite values and their one canonical JSON form.
//!
//! The wire must keep SQLite's five storage classes apart and must survive a trip through a JavaScript
//! `JSON.parse`, whose numbers are doubles. So each value has exactly one encoding:
//!
//! | SQLite                       | JSON                              |
//! |------------------------------|-----------------------------------|
//! | NULL                         | `null`                            |
//! | INTEGER in ±(2^53 − 1)       | a bare number: `42`               |
//! | INTEGER outside that range   | `{"int": "9223372036854775807"}`  |
//! | REAL                         | `{"real": 1.5}`, `{"real": "inf"}`, `{"real": "-inf"}` |
//! | TEXT                         | a string: `"open"`                |
//! | BLOB                         | `{"blob": "<standard base64>"}`   |
//!
//! A bare JSON number is therefore always an exact integer, and anything that is not canonical (a bare
//! `1.5`, `{"int": "5"}`, a tagged object with extra keys) is refused by the decoder.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rusqlite::types::{ToSqlOutput, ValueRef};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest integer a JavaScript number holds exactly (2^53 − 1).
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// One SQLite value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// An IEEE double. SQLite never stores NaN (it becomes NULL), so neither does this.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Blob(Vec<u8>),
}

impl Value {
    /// True when both values are the same SQLite value, as SQLite's session extension compares them:
    /// same storage class and same bytes (so `1` and `1.0` differ, and reals compare bit for bit).
    pub fn same_as(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits(),
            _ => self == other,
        }
    }

    /// SQL's `IS`: the comparison SQLite's changeset apply uses to decide whether a row still holds
    /// a change's base values. Unlike [`Value::same_as`], an INTEGER and a REAL of the same number
    /// are equal (`3 IS 3.0`), and so are `0.0` and `-0.0`.
    pub fn sql_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Integer(i), Value::Real(r)) | (Value::Real(r), Value::Integer(i)) => {
                r.fract() == 0.0
                    && *r >= -9.223_372_036_854_776e18
                    && *r < 9.223_372_036_854_776e18
                    && *r as i64 == *i
            }
            (Value::Real(a), Value::Real(b)) => a == b,
            _ => self == other,
        }
    }

    /// Reads a value that SQLite handed out. Text that is not UTF-8 is refused.
    pub(crate) fn from_value_ref(v: ValueRef<'_>) -> Result<Value, std::str::Utf8Error> {
        BorrowedValue::read(v).map(BorrowedValue::to_value)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl rusqlite::types::FromSql for Value {
    fn column_result(v: ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        Value::from_value_ref(v).map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Integer(i)
    }
}

impl From<f64> for Value {
    fn from(r: f64) -> Self {
        Value::Real(r)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        BorrowedValue::of(self).serialize(s)
    }
}

/// A value borrowed where it is (a row SQLite is reading, a [`Value`]), with its text checked to be
/// UTF-8: a snapshot's rows are written this way, with no `String` made per value. It serialises as
/// the [`Value`] does: both write through it, the one canonical JSON.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BorrowedValue<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// An IEEE double.
    Real(f64),
    /// UTF-8 text.
    Text(&'a str),
    /// Raw bytes.
    Blob(&'a [u8]),
}

impl<'a> BorrowedValue<'a> {
    /// A value as SQLite gives it; text that is not UTF-8 is an error (as for [`Value`]).
    pub fn read(v: ValueRef<'a>) -> Result<BorrowedValue<'a>, std::str::Utf8Error> {
        Ok(match v {
            ValueRef::Null => BorrowedValue::Null,
            ValueRef::Integer(i) => BorrowedValue::Integer(i),
            ValueRef::Real(r) => BorrowedValue::Real(r),
            ValueRef::Text(t) => BorrowedValue::Text(std::str::from_utf8(t)?),
            ValueRef::Blob(b) => BorrowedValue::Blob(b),
        })
    }

    /// `v`, borrowed.
    pub fn of(v: &'a Value) -> BorrowedValue<'a> {
        match v {
            Value::Null => BorrowedValue::Null,
            Value::Integer(i) => BorrowedValue::Integer(*i),
            Value::Real(r) => BorrowedValue::Real(*r),
            Value::Text(t) => BorrowedValue::Text(t),
            Value::Blob(b) => BorrowedValue::Blob(b),
        }
    }

    /// The same value, owned.
    pub fn to_value(self) -> Value {
        match self {
            BorrowedValue::Null => Value::Null,
            BorrowedValue::Integer(i) => Value::Integer(i),
            BorrowedValue::Real(r) => Value::Real(r),
            BorrowedValue::Text(t) => Value::Text(t.to_owned()),
            BorrowedValue::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl Serialize for BorrowedValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            BorrowedValue::Null => s.serialize_unit(),
            BorrowedValue::Integer(i) if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) => {
                s.serialize_i64(i)
            }
            BorrowedValue::Integer(i) => tagged(s, "int", &i.to_string()),
            BorrowedValue::Real(r) if r.is_finite() => tagged(s, "real", &r),
            BorrowedValue::Real(r) if r > 0.0 => tagged(s, "real", "inf"),
            BorrowedValue::Real(r) if r < 0.0 => tagged(s, "real", "-inf"),
            BorrowedValue::Real(_) => Err(serde::ser::Error::custom("NaN is not a SQLite value")),
            BorrowedValue::Text(t) => s.serialize_str(t),
            BorrowedValue::Blob(b) => tagged(s, "blob", &BASE64.encode(b)),
        }
    }
}

fn tagged<S: Serializer, T: Serialize + ?Sized>(s: S, tag: &str, v: &T) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(1))?;
    m.serialize_entry(tag, v)?;
    m.end()
}

/// A value as a frame holds it, read without copying: text with no escape in it is borrowed from the
/// frame (a snapshot's rows are read this way, `crate::rows::read_rows`, rather than as a `String`
/// per value). The same canonical JSON as [`Value`], checked the same way.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameValue<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// An IEEE double.
    Real(f64),
    /// UTF-8 text.
    Text(Cow<'a, str>),
    /// Raw bytes.
    Blob(Vec<u8>),
}

impl FrameValue<'_> {
    /// The same value, owned.
    pub fn to_value(&self) -> Value {
        match self {
            FrameValue::Null => Value::Null,
            FrameValue::Integer(i) => Value::Integer(*i),
            FrameValue::Real(r) => Value::Real(*r),
            FrameValue::Text(t) => Value::Text(t.clone().into_owned()),
            FrameValue::Blob(b) => Value::Blob(b.clone()),
        }
    }

    /// Its storage class, as the value of that class (text and blob empty), for type checks.
    pub(crate) fn class(&self) -> Value {
        match self {
            FrameValue::Null => Value::Null,
            FrameValue::Integer(i) => Value::Integer(*i),
            FrameValue::Real(r) => Value::Real(*r),
            FrameValue::Text(_) => Value::Text(String::new()),
            FrameValue::Blob(_) => Value::Blob(Vec::new()),
        }
    }
}

impl From<Value> for FrameValue<'_> {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => FrameValue::Null,
            Value::Integer(i) => FrameValue::Integer(i),
            Value::Real(r) => FrameValue::Real(r),
            Value::Text(t) => FrameValue::Text(Cow::Owned(t)),
            Value::Blob(b) => FrameValue::Blob(b),
        }
    }
}

impl rusqlite::ToSql for FrameValue<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            FrameValue::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            FrameValue::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            FrameValue::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            FrameValue::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            FrameValue::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl<'de> Deserialize<'de> for FrameValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FrameValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                ValueVisitor.expecting(f)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(FrameValue::Null)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FrameValue::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FrameValue::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(FrameValue::Text(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                ValueVisitor.visit_i64(v).map(FrameValue::from)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                ValueVisitor.visit_u64(v).map(FrameValue::from)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                ValueVisitor.visit_f64(v).map(FrameValue::from)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                ValueVisitor.visit_map(map).map(FrameValue::from)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null, a string, a safe integer, or {\"int\"|\"real\"|\"blob\": ...}")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Text(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&v) {
            Ok(Value::Integer(v))
        } else {
            Err(E::custom(format!("integer {v} is beyond ±2^53-1 and must be written {{\"int\": \"{v}\"}}")))
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(i) => self.visit_i64(i),
            Err(_) => Err(E::custom(format!("integer {v} does not fit in 64 signed bits"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Err(E::custom(format!("bare number {v} is not an integer; a REAL is written {{\"real\": {v}}}")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some(tag) = map.next_key::<String>()? else {
            return Err(de::Error::custom("an empty object is not a value"));
        };
        let value = match tag.as_str() {
            "int" => {
                let s: String = map.next_value()?;
                let i: i64 =
                    s.parse().map_err(|_| de::Error::custom(format!("{s:?} is not a 64-bit integer")))?;
                if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) || s != i.to_string() {
                    return Err(de::Error::custom(format!(
                        "{{\"int\": {s:?}}} is not canonical: safe integers are bare numbers"
                    )));
                }
                Value::Integer(i)
            }
            "real" => Value::Real(map.next_value::<RealRepr>()?.0),
            "blob" => {
                let s: String = map.next_value()?;
                Value::Blob(
                    BASE64
                        .decode(s.as_bytes())
                        .map_err(|e| de::Error::custom(format!("blob is not standard base64: {e}")))?,
                )
            }
            other => return Err(de::Error::custom(format!("unknown value tag {other:?}"))),
        };
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a tagged value has exactly one key"));
        }
        Ok(value)
    }
}

/// The payload of `{"real": ...}`: a finite number, or `"inf"` / `"-inf"`.
struct RealRepr(f64);

impl<'de> Deserialize<'de> for RealRepr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RealRepr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, \"inf\" or \"-inf\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RealRepr, E> {
                Ok(RealRepr(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RealRepr, E> {
                Ok(RealRepr(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RealRepr, E> {
                Ok(RealRepr(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RealRepr, E> {
                match v {
                    "inf" => Ok(RealRepr(f64::INFINITY)),
                    "-inf" => Ok(RealRepr(f64::NEG_INFINITY)),
                    _ => Err(E::custom(format!(
                        "{v:?} is not a real; only \"inf\" and \"-inf\" are written as strings"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(v: Value) -> String {
        let json = serde_json::to_string(&v).unwrap();
        let back: Value = serde_json::from_str(&json).unwrap();
        assert!(back.same_as(&v), "{v:?} -> {json} -> {back:?}");
        json
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(round(Value::Null), "null");
        assert_eq!(round(Value::Integer(42)), "42");
        assert_eq!(round(Value::Integer(MAX_SAFE_INTEGER)), "9007199254740991");
        assert_eq!(round(Value::Integer(i64::MAX)), r#"{"int":"9223372036854775807"}"#);
        assert_eq!(round(Value::Integer(i64::MIN)), r#"{"int":"-9223372036854775808"}"#);
        assert_eq!(round(Value::Real(3.0)), r#"{"real":3.0}"#);
        assert_eq!(round(Value::Real(-0.0)), r#"{"real":-0.0}"#);
        assert_eq!(round(Value::Real(f64::INFINITY)), r#"{"real":"inf"}"#);
        assert_eq!(round(Value::Text("1".into())), r#""1""#);
        assert_eq!(round(Value::Blob(vec![0, 255])), r#"{"blob":"AP8="}"#);
        // Found by the round-trip property test: needs serde_json's exact float parsing.
        assert_eq!(round(Value::Real(-5.9657816466509294e-52)), r#"{"real":-5.9657816466509294e-52}"#);
    }

    #[test]
    fn sql_equality_follows_sqlite() {
        assert!(Value::Integer(3).sql_eq(&Value::Real(3.0)));
        assert!(!Value::Integer(3).same_as(&Value::Real(3.0)));
        assert!(Value::Real(0.0).sql_eq(&Value::Real(-0.0)));
        assert!(!Value::Real(0.0).same_as(&Value::Real(-0.0)));
        assert!(!Value::Integer(i64::MAX).sql_eq(&Value::Real(9.223_372_036_854_776e18)));
        assert!(!Value::Text("3".into()).sql_eq(&Value::Integer(3)));
        assert!(!Value::Text("a".into()).sql_eq(&Value::Blob(b"a".to_vec())));
        assert!(Value::Null.sql_eq(&Value::Null));
    }

    #[test]
    fn non_canonical_is_refused() {
        for bad in [
            "1.5",
            "1e3",
            "9007199254740992",
            r#"{"int":"5"}"#,
            r#"{"int":"007199254740993000"}"#,
            r#"{"real":1,"blob":""}"#,
            r#"{"real":"nan"}"#,
            r#"{"blob":"***"}"#,
            r#"{"date":"x"}"#,
            "{}",
            "[]",
            "true",
        ] {
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad} was accepted");
        }
    }
}
