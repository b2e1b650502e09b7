//! /json's body: a RateLimitRequest in protobuf's JSON mapping, as `http.py` reads it with
//! `json_format.Parse`. The common form (domain, descriptors of entries, a request-level
//! `hitsAddend`, under either field name) is decoded here; anything else (a descriptor's own
//! limit or hits, a null, a number as text, an error) is `None`, for the general path.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::check::Entries;

#[derive(Debug, PartialEq, Eq)]
pub struct RlsCall {
    pub domain: String,
    pub descriptors: Vec<Entries>,
    pub hits_addend: u32,
}

pub fn decode_rls(body: &[u8]) -> Option<RlsCall> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let call = Message::Request.deserialize(&mut de).ok()?;
    de.end().ok()?;
    match call {
        Decoded::Request(call) => Some(call),
        _ => None,
    }
}

fn refuse<E: de::Error>() -> E {
    E::custom("refused")
}

/// Which message an object is read as.
#[derive(Clone, Copy)]
enum Message {
    Request,
    Descriptor,
    Entry,
}

enum Decoded {
    Request(RlsCall),
    Descriptor(Entries),
    Entry((String, String)),
}

impl<'de> DeserializeSeed<'de> for Message {
    type Value = Decoded;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Decoded, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Message {
    type Value = Decoded;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a RateLimitRequest")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Decoded, A::Error> {
        let mut seen: Vec<&'static str> = Vec::with_capacity(3);
        let mut once = |field: &'static str| {
            if seen.contains(&field) {
                return Err(refuse());
            }
            seen.push(field);
            Ok(())
        };
        let mut request = RlsCall {
            domain: String::new(),
            descriptors: Vec::new(),
            hits_addend: 0,
        };
        let mut entries = Entries::new();
        let (mut key, mut value) = (String::new(), String::new());
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            match (self, name.as_ref()) {
                (Message::Request, "domain") => {
                    once("domain")?;
                    request.domain = map.next_value::<Cow<'de, str>>()?.into_owned();
                }
                (Message::Request, "descriptors") => {
                    once("descriptors")?;
                    request.descriptors = map
                        .next_value_seed(List(Message::Descriptor))?
                        .into_iter()
                        .map(|d| match d {
                            Decoded::Descriptor(entries) => entries,
                            _ => unreachable!("a list of descriptors"),
                        })
                        .collect();
                }
                (Message::Request, "hitsAddend" | "hits_addend") => {
                    once("hits_addend")?;
                    let hits = map.next_value::<u64>()?;
                    request.hits_addend = u32::try_from(hits).map_err(|_| refuse())?;
                }
                (Message::Descriptor, "entries") => {
                    once("entries")?;
                    entries = map
                        .next_value_seed(List(Message::Entry))?
                        .into_iter()
                        .map(|e| match e {
                            Decoded::Entry(pair) => pair,
                            _ => unreachable!("a list of entries"),
                        })
                        .collect();
                }
                (Message::Entry, "key") => {
                    once("key")?;
                    key = map.next_value::<Cow<'de, str>>()?.into_owned();
                }
                (Message::Entry, "value") => {
                    once("value")?;
                    value = map.next_value::<Cow<'de, str>>()?.into_owned();
                }
                _ => return Err(refuse()),
            }
        }
        Ok(match self {
            Message::Request => Decoded::Request(request),
            Message::Descriptor => Decoded::Descriptor(entries),
            Message::Entry => Decoded::Entry((key, value)),
        })
    }
}

/// A JSON list of one message kind.
struct List(Message);

impl<'de> DeserializeSeed<'de> for List {
    type Value = Vec<Decoded>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Vec<Decoded>, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for List {
    type Value = Vec<Decoded>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Decoded>, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element_seed(self.0)? {
            out.push(item);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_form() {
        let call = decode_rls(
            br#"{"domain": "d", "descriptors": [{"entries": [{"key": "k", "value": "v"}, {"key": "e"}]}, {}], "hitsAddend": 4}"#,
        )
        .unwrap();
        assert_eq!(call.domain, "d");
        assert_eq!(
            call.descriptors,
            vec![
                vec![("k".into(), "v".into()), ("e".into(), String::new())],
                vec![]
            ]
        );
        assert_eq!(call.hits_addend, 4);
        assert_eq!(decode_rls(br#"{"hits_addend": 2}"#).unwrap().hits_addend, 2);
        assert_eq!(decode_rls(b"{}").unwrap().domain, "");
    }

    #[test]
    fn the_general_path_reads_the_rest() {
        for text in [
            "",
            "[]",
            r#"{"domain": null}"#,
            r#"{"domain": "d", "hitsAddend": "4"}"#,
            r#"{"domain": "d", "hitsAddend": 4.0}"#,
            r#"{"domain": "d", "hitsAddend": 4294967296}"#,
            r#"{"domain": "d", "hitsAddend": 1, "hits_addend": 1}"#,
            r#"{"domain": "d", "domain": "e"}"#,
            r#"{"domain": "d", "descriptors": [{"entries": [], "limit": {"requestsPerUnit": 1}}]}"#,
            r#"{"domain": "d", "descriptors": [{"entries": [], "hitsAddend": 1}]}"#,
            r#"{"domain": "d", "descriptors": [{"entries": [{"key": "k", "valu": "v"}]}]}"#,
            r#"{"domain": "d", "extra": 1}"#,
            r#"{"domain": "\udc00"}"#,
        ] {
            assert_eq!(decode_rls(text.as_bytes()), None, "{text}");
        }
    }
}
