//! /v1/forward-auth's inputs (`transports/rest/handlers.py`): the namespace and identifier
//! from request headers, the refusal status from `?deny_status=`. Inputs only the general path
//! can judge (a missing or blank value, an odd `deny_status`) are `None`: it answers them.

use sha2::{Digest, Sha256};

use super::check::IDENTIFIER_KEY;
use super::head::Head;

/// VIVA_FORWARD_AUTH_* and the default refusal status.
#[derive(Clone, Debug)]
pub struct ForwardOptions {
    pub identifier_header: String,
    /// 1 the first X-Forwarded-For address, -1 the last, …
    pub xff_index: i64,
    /// Empty: only the default namespace.
    pub namespace_header: String,
    pub default_namespace: String,
    pub hash_identifier: bool,
    pub deny_status: u16,
}

/// What forward-auth asks the engine, and how a refusal is answered.
#[derive(Debug, PartialEq, Eq)]
pub struct ForwardCall {
    pub namespace: String,
    pub entries: Vec<(String, String)>,
    pub deny_status: u16,
}

pub fn forward_call(head: &Head<'_>, options: &ForwardOptions) -> Option<ForwardCall> {
    let deny_status = deny_status(head.query, options.deny_status)?;
    let namespace = namespace(head, options)?;
    let identifier = identifier(head, options)?;
    Some(ForwardCall {
        namespace,
        entries: vec![(IDENTIFIER_KEY.to_owned(), identifier)],
        deny_status,
    })
}

fn namespace(head: &Head<'_>, options: &ForwardOptions) -> Option<String> {
    let name = &options.namespace_header;
    let value = if name.is_empty() {
        ""
    } else {
        head.header(name).unwrap_or("")
    };
    let value = value.trim_matches([' ', '\t']);
    if !value.is_empty() {
        return Some(value.to_owned());
    }
    (!options.default_namespace.is_empty()).then(|| options.default_namespace.clone())
}

fn identifier(head: &Head<'_>, options: &ForwardOptions) -> Option<String> {
    let name = &options.identifier_header;
    let mut value = head.header(name).unwrap_or("");
    if name.eq_ignore_ascii_case("x-forwarded-for") {
        value = forwarded_address(value, options.xff_index);
    }
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    if options.hash_identifier {
        let digest = Sha256::digest(value.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        return Some(format!("sha256:{hex}"));
    }
    Some(value.to_owned())
}

/// handlers.py's `_forwarded_address`: the address at `index` (1-based; negative from the
/// end), the nearest end when past it.
fn forwarded_address(header: &str, index: i64) -> &str {
    let addresses: Vec<&str> = header.split(',').collect();
    let n = addresses.len() as i64;
    let at = if index > 0 {
        index.min(n) - 1
    } else {
        n + index.max(-n)
    };
    addresses[at as usize]
}

/// `?deny_status=` as the router's query reads it (the first one), else `default`; `None`
/// when the general path must judge it (a value other than 403 or 429, or an encoded key).
fn deny_status(query: &str, default: u16) -> Option<u16> {
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "deny_status" {
            return match value {
                "403" => Some(403),
                "429" => Some(429),
                _ => None,
            };
        }
        if (key.contains('%') || key.contains('+')) && decodes_to(key, "deny_status") {
            return None;
        }
    }
    Some(default)
}

/// Whether the query key `raw` (percent-encoded, `+` for space) may decode to `wanted`.
fn decodes_to(raw: &str, wanted: &str) -> bool {
    let raw = raw.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out == wanted.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::head::{parse_head, Parsed};

    fn options() -> ForwardOptions {
        ForwardOptions {
            identifier_header: "X-Forwarded-For".into(),
            xff_index: 1,
            namespace_header: "X-RateLimit-Namespace".into(),
            default_namespace: String::new(),
            hash_identifier: false,
            deny_status: 429,
        }
    }

    fn call(target: &str, headers: &str, options: &ForwardOptions) -> Option<ForwardCall> {
        let text = format!("GET {target} HTTP/1.1\r\nHost: a\r\n{headers}\r\n");
        let Parsed::Complete(head) = parse_head(text.as_bytes()) else {
            panic!("{text}");
        };
        forward_call(&head, options)
    }

    #[test]
    fn from_headers() {
        let o = options();
        let got = call(
            "/v1/forward-auth/x?deny_status=403",
            "X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nx-ratelimit-namespace: api\r\n",
            &o,
        )
        .unwrap();
        assert_eq!(got.namespace, "api");
        assert_eq!(got.entries, vec![("identifier".into(), "1.1.1.1".into())]);
        assert_eq!(got.deny_status, 403);
        let last = ForwardOptions {
            xff_index: -1,
            ..options()
        };
        let h = "X-Forwarded-For: 1.1.1.1, 2.2.2.2 \r\nX-RateLimit-Namespace: api\r\n";
        assert_eq!(
            call("/v1/forward-auth", h, &last).unwrap().entries[0].1,
            "2.2.2.2"
        );
        let far = ForwardOptions {
            xff_index: 5,
            ..options()
        };
        assert_eq!(
            call("/v1/forward-auth", h, &far).unwrap().entries[0].1,
            "2.2.2.2"
        );
        let near = ForwardOptions {
            xff_index: -9,
            ..options()
        };
        assert_eq!(
            call("/v1/forward-auth", h, &near).unwrap().entries[0].1,
            "1.1.1.1"
        );
    }

    #[test]
    fn defaults_and_hashing() {
        let o = ForwardOptions {
            identifier_header: "X-Api-Key".into(),
            namespace_header: String::new(),
            default_namespace: "keys".into(),
            hash_identifier: true,
            ..options()
        };
        let got = call(
            "/v1/forward-auth",
            "X-Api-Key: abc\r\nX-RateLimit-Namespace: no\r\n",
            &o,
        )
        .unwrap();
        assert_eq!(got.namespace, "keys");
        assert_eq!(
            got.entries[0].1,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(got.deny_status, 429);
    }

    #[test]
    fn the_general_path_judges_the_rest() {
        let o = options();
        let ok = "X-Forwarded-For: 1.1.1.1\r\nX-RateLimit-Namespace: api\r\n";
        assert!(call("/v1/forward-auth", "X-RateLimit-Namespace: api\r\n", &o).is_none());
        assert!(call(
            "/v1/forward-auth",
            "X-Forwarded-For: , 2.2.2.2\r\nX-RateLimit-Namespace: api\r\n",
            &o
        )
        .is_none());
        assert!(call("/v1/forward-auth", "X-Forwarded-For: 1.1.1.1\r\n", &o).is_none());
        assert!(call("/v1/forward-auth?deny_status=404", ok, &o).is_none());
        assert!(call("/v1/forward-auth?deny_status=4%303", ok, &o).is_none());
        assert!(call("/v1/forward-auth?deny%5Fstatus=403", ok, &o).is_none());
        assert!(call("/v1/forward-auth?deny_status", ok, &o).is_none());
        assert_eq!(
            call("/v1/forward-auth?a=b%20c&x%5F=1", ok, &o)
                .unwrap()
                .deny_status,
            429
        );
        assert_eq!(
            call("/v1/forward-auth?deny_status=403&deny_status=x", ok, &o)
                .unwrap()
                .deny_status,
            403
        );
    }
}
