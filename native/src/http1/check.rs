//! The body of /v1/check and /v1/report (`transports/rest/requests.py`), decoded with
//! serde_json when it is valid. Every body that declaration accepts and this decoder accepts
//! gives the same call; every other body (invalid, or valid in a way only the general path
//! reads: a duplicate field, `2.0` hits, a byte-order mark, UTF-16) is `None`, and the general
//! path's code reads it, so each error keeps its words and its field.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

pub const IDENTIFIER_KEY: &str = "identifier";

pub type Entries = Vec<(String, String)>;

/// The limits of RestOptions the declaration holds.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max_descriptors: usize,
    pub max_entries: usize,
    pub max_hits: u64,
}

/// A valid body, as the engine is asked (requests.py's CheckCall).
#[derive(Debug, PartialEq, Eq)]
pub struct CheckCall {
    pub namespace: String,
    pub descriptors: Vec<Entries>,
    pub hits: u64,
    /// Sent as descriptors: each one is answered too.
    pub itemized: bool,
}

/// `body` as a call, or `None` when only the general path can say what it is.
pub fn decode_check(body: &[u8], limits: BodyLimits) -> Option<CheckCall> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let fields = CheckSeed(limits).deserialize(&mut de).ok()?;
    de.end().ok()?;
    let namespace = fields.namespace?;
    match (fields.identifier, fields.descriptors) {
        (Some(identifier), None) => Some(CheckCall {
            namespace: namespace.into_owned(),
            descriptors: vec![vec![(IDENTIFIER_KEY.to_owned(), identifier.into_owned())]],
            hits: fields.hits.unwrap_or(1),
            itemized: false,
        }),
        (None, Some(descriptors)) => Some(CheckCall {
            namespace: namespace.into_owned(),
            descriptors,
            hits: fields.hits.unwrap_or(1),
            itemized: true,
        }),
        _ => None,
    }
}

fn refuse<E: de::Error>() -> E {
    E::custom("refused")
}

#[derive(Default)]
struct CheckFields<'a> {
    namespace: Option<Cow<'a, str>>,
    identifier: Option<Cow<'a, str>>,
    descriptors: Option<Vec<Entries>>,
    hits: Option<u64>,
}

struct CheckSeed(BodyLimits);

impl<'de> DeserializeSeed<'de> for CheckSeed {
    type Value = CheckFields<'de>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for CheckSeed {
    type Value = CheckFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a check body")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = CheckFields::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "namespace" if fields.namespace.is_none() => {
                    fields.namespace = Some(text(map.next_value::<Cow<'de, str>>()?)?);
                }
                "identifier" if fields.identifier.is_none() => {
                    fields.identifier = Some(text(map.next_value::<Cow<'de, str>>()?)?);
                }
                "descriptors" if fields.descriptors.is_none() => {
                    fields.descriptors = Some(map.next_value_seed(DescriptorsSeed(self.0))?);
                }
                "hits" if fields.hits.is_none() => {
                    let hits = map.next_value_seed(Count)?;
                    if hits > self.0.max_hits {
                        return Err(refuse());
                    }
                    fields.hits = Some(hits);
                }
                _ => return Err(refuse()), // unknown, or a second time: the general path's
            }
        }
        Ok(fields)
    }
}

/// Non-empty text (the declaration's `min_length=1`).
fn text<E: de::Error>(value: Cow<'_, str>) -> Result<Cow<'_, str>, E> {
    if value.is_empty() {
        Err(refuse())
    } else {
        Ok(value)
    }
}

/// A whole number written as one (`2.0` and `-0` are the general path's to read).
struct Count;

impl<'de> DeserializeSeed<'de> for Count {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<u64, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
}

struct DescriptorsSeed(BodyLimits);

impl<'de> DeserializeSeed<'de> for DescriptorsSeed {
    type Value = Vec<Entries>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for DescriptorsSeed {
    type Value = Vec<Entries>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of descriptors")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(entries) = seq.next_element_seed(EntriesSeed(self.0.max_entries))? {
            if out.len() == self.0.max_descriptors {
                return Err(refuse());
            }
            out.push(entries);
        }
        if out.is_empty() {
            return Err(refuse());
        }
        Ok(out)
    }
}

struct EntriesSeed(usize);

impl<'de> DeserializeSeed<'de> for EntriesSeed {
    type Value = Entries;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Entries, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = Entries;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entries, A::Error> {
        let mut out = Vec::new();
        while let Some(entry) = seq.next_element_seed(EntrySeed)? {
            if out.len() == self.0 {
                return Err(refuse());
            }
            out.push(entry);
        }
        if out.is_empty() {
            return Err(refuse());
        }
        Ok(out)
    }
}

struct EntrySeed;

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = (String, String);

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = (String, String);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"{"key": …, "value": …}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut key, mut value) = (None, None);
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            let slot = match name.as_ref() {
                "key" if key.is_none() => &mut key,
                "value" if value.is_none() => &mut value,
                _ => return Err(refuse()),
            };
            *slot = Some(text(map.next_value::<Cow<'de, str>>()?)?.into_owned());
        }
        match (key, value) {
            (Some(key), Some(value)) => Ok((key, value)),
            _ => Err(refuse()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BodyLimits = BodyLimits {
        max_descriptors: 2,
        max_entries: 2,
        max_hits: 100,
    };

    fn decode(text: &str) -> Option<CheckCall> {
        decode_check(text.as_bytes(), LIMITS)
    }

    #[test]
    fn an_identifier() {
        let call =
            decode(r#" {"namespace": "api", "identifier": "u\u00e91", "hits": 3} "#).unwrap();
        assert_eq!(call.namespace, "api");
        assert_eq!(
            call.descriptors,
            vec![vec![("identifier".into(), "ué1".into())]]
        );
        assert_eq!((call.hits, call.itemized), (3, false));
        assert_eq!(
            decode(r#"{"identifier": "u", "namespace": "api"}"#)
                .unwrap()
                .hits,
            1
        );
    }

    #[test]
    fn descriptors() {
        let call = decode(
            r#"{"namespace": "shop", "descriptors": [[{"key": "a", "value": "1"}],
                [{"value": "2", "key": "b"}, {"key": "c", "value": "3"}]], "hits": 0}"#,
        )
        .unwrap();
        assert!(call.itemized);
        assert_eq!(call.hits, 0);
        assert_eq!(call.descriptors[1][0], ("b".into(), "2".into()));
    }

    #[test]
    fn the_general_path_reads_the_rest() {
        for text in [
            "",
            "[]",
            "{}",
            r#"{"namespace": "api"}"#,
            r#"{"namespace": "", "identifier": "u"}"#,
            r#"{"namespace": "api", "identifier": ""}"#,
            r#"{"namespace": "api", "identifier": "u", "descriptors": [[{"key": "a", "value": "b"}]]}"#,
            r#"{"namespace": "api", "identifier": "u", "extra": 1}"#,
            r#"{"namespace": "api", "namespace": "api", "identifier": "u"}"#,
            r#"{"namespace": "api", "identifier": "u", "hits": 2.0}"#,
            r#"{"namespace": "api", "identifier": "u", "hits": -0}"#,
            r#"{"namespace": "api", "identifier": "u", "hits": -1}"#,
            r#"{"namespace": "api", "identifier": "u", "hits": 101}"#,
            r#"{"namespace": "api", "identifier": "u", "hits": "1"}"#,
            r#"{"namespace": "api", "identifier": "u", "hits": null}"#,
            r#"{"namespace": "api", "identifier": null}"#,
            r#"{"namespace": "api", "identifier": "\ud800"}"#,
            r#"{"namespace": "api", "identifier": "u", "hits": NaN}"#,
            r#"{"namespace": "api", "descriptors": []}"#,
            r#"{"namespace": "api", "descriptors": [[]]}"#,
            r#"{"namespace": "api", "descriptors": [[{"key": "a"}]]}"#,
            r#"{"namespace": "api", "descriptors": [[{"key": "a", "value": "b", "x": 1}]]}"#,
            r#"{"namespace": "api", "descriptors": [[{"key": "a", "value": ""}]]}"#,
            r#"{"namespace": "api", "descriptors": [[{"key":"a","value":"b"}],[{"key":"a","value":"b"}],[{"key":"a","value":"b"}]]}"#,
            r#"{"namespace": "api", "descriptors": [[{"key":"a","value":"b"},{"key":"a","value":"b"},{"key":"a","value":"b"}]]}"#,
            "\u{feff}{\"namespace\": \"api\", \"identifier\": \"u\"}",
            r#"{"namespace": "api", "identifier": "u"} x"#,
        ] {
            assert_eq!(decode(text), None, "{text}");
        }
        assert_eq!(
            decode_check(b"{\"namespace\": \"a\xff\", \"identifier\": \"u\"}", LIMITS),
            None
        );
    }
}
