//! [`Body`]: an arbitrary JSON value carried verbatim through both wire forms.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// Why a string could not become a [`Body`].
#[derive(Debug, thiserror::Error)]
#[error("body is not valid JSON: {0}")]
pub struct BodyError(#[from] serde_json::Error);

/// A JSON value kept as its validated text, so the server stores and forwards it without
/// re-parsing.
///
/// In JSON frames it appears as the value itself; in binary (postcard) frames, which cannot carry
/// self-describing data, it travels as the JSON text in a string.
#[derive(Clone)]
pub struct Body(Box<RawValue>);

impl Body {
    /// Validates `text` as one JSON value and keeps it as written (no reformatting).
    pub fn from_json(text: impl Into<String>) -> Result<Self, BodyError> {
        Ok(Self(RawValue::from_string(text.into())?))
    }

    /// Encodes a serializable value (for example a `serde_json::Value`) as a body.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, BodyError> {
        Ok(Self(serde_json::value::to_raw_value(value)?))
    }

    /// The JSON `null` body.
    pub fn null() -> Self {
        // "null" is valid JSON, so this cannot fail; the fallback keeps it panic-free anyway.
        Self::from_json("null").unwrap_or_else(|_| Self(Box::<RawValue>::default()))
    }

    /// The JSON text of the body.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Parses the body into any deserializable type (for example `serde_json::Value`).
    pub fn parse<T: de::DeserializeOwned>(&self) -> Result<T, BodyError> {
        Ok(serde_json::from_str(self.0.get())?)
    }

    /// Length of the JSON text in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// Whether the JSON text is empty (never true for a valid body; present for symmetry with `len`).
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Body {}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            self.0.serialize(serializer)
        } else {
            serializer.serialize_str(self.0.get())
        }
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            Box::<RawValue>::deserialize(deserializer).map(Self)
        } else {
            let text = String::deserialize(deserializer)?;
            Self::from_json(text).map_err(de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_json_text_verbatim() {
        let body = Body::from_json(r#"{"b": [1, 2.5, "x"]}"#).unwrap();
        assert_eq!(body.as_str(), r#"{"b": [1, 2.5, "x"]}"#);
        let value: serde_json::Value = body.parse().unwrap();
        assert_eq!(value["b"][2], "x");
    }

    #[test]
    fn rejects_invalid_json() {
        assert!(Body::from_json("{not json").is_err());
        assert!(Body::from_json("").is_err());
    }

    #[test]
    fn round_trips_through_postcard_as_text() {
        let body = Body::from_json(r#"[true,null]"#).unwrap();
        let bytes = postcard::to_stdvec(&body).unwrap();
        let back: Body = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn postcard_rejects_a_string_that_is_not_json() {
        let bytes = postcard::to_stdvec("not json").unwrap();
        assert!(postcard::from_bytes::<Body>(&bytes).is_err());
    }
}
