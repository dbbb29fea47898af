//! DNS records in the canonical clawwatch shape (DESIGN §2.3).

use super::fields::{Fields, Key, Value};
use super::reader::{Ip, Time};
use super::{DnsAnswer, DnsQuery, Event, Reader, Recognized, Stream};
use std::borrow::Cow;

/// Answers beyond this many are ignored: no real response has more, and a
/// crafted one must not grow the DNS map unboundedly in one record.
const MAX_ANSWERS: usize = 64;

/// `{"type":"dns","ts","client_ip","resolver_ip","qname","qtype","rcode","answers":[{"data","ttl"}]}`
pub fn canonical(fields: &Fields) -> Recognized {
    let r = Reader {
        fields,
        stream: Stream::Dns,
        format: "dns",
    };
    let decode = || {
        let text = |key: Key| -> Result<Option<Cow<'static, str>>, super::DecodeError> {
            match fields.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Str(s)) => Ok(Some(dns_word(s))),
                Some(v) => v
                    .as_u64()
                    .map(|n| Some(n.to_string().into()))
                    .ok_or_else(|| {
                        r.error(
                            key,
                            format!("must be a string or number, found {}", v.type_name()),
                        )
                    }),
            }
        };
        let qname = r.required(Key::Qname, Reader::string)?;
        let mut answers = Vec::new();
        match fields.get(Key::Answers) {
            None | Some(Value::Null) => {}
            Some(Value::List(items)) => {
                for (i, item) in items.iter().take(MAX_ANSWERS).enumerate() {
                    answers.push(answer(item).ok_or_else(|| {
                        r.error(
                            Key::Answers,
                            format!(
                                "item {i} is not {{\"data\": string, \"ttl\": seconds}}: {}",
                                item.preview()
                            ),
                        )
                    })?);
                }
            }
            Some(other) => {
                return Err(r.error(
                    Key::Answers,
                    format!("must be an array, found {}", other.type_name()),
                ));
            }
        }
        Ok(DnsQuery {
            ts: r.required(Key::Ts, Reader::read::<Time>)?,
            client: r.required(Key::ClientIp, Reader::read::<Ip>)?,
            resolver: r.read::<Ip>(Key::ResolverIp)?,
            qname: normalize_owned_name(qname),
            qtype: text(Key::Qtype)?,
            rcode: text(Key::Rcode)?,
            answers,
        })
    };
    Recognized::from_decoded(decode(), Event::Dns)
}

fn answer(item: &Value) -> Option<DnsAnswer> {
    match item {
        Value::Str(s) => Some(DnsAnswer {
            data: s.trim().to_string(),
            ttl: 0,
        }),
        Value::Map(_) => {
            let data = item.get("data")?.as_str()?.trim().to_string();
            let ttl = match item.get("ttl") {
                None | Some(Value::Null) => 0,
                Some(v) => u32::try_from(v.as_u64()?).unwrap_or(u32::MAX),
            };
            Some(DnsAnswer { data, ttl })
        }
        _ => None,
    }
}

/// Lower-case, without the trailing root dot, so policy names compare plainly.
pub(crate) fn normalize_name(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// [`normalize_name`] of a name the caller owns: lower-cased in place when
/// there is nothing to trim (as there mostly is not), without a second string.
pub(crate) fn normalize_owned_name(mut name: String) -> String {
    if name.trim().trim_end_matches('.').len() != name.len() {
        return normalize_name(&name);
    }
    name.make_ascii_lowercase();
    name
}

/// A query type or response code as a DNS record holds it: the common ones
/// as static text, so most records cost no allocation for them.
pub(crate) fn dns_word(text: &str) -> Cow<'static, str> {
    const COMMON: &[&str] = &[
        "A", "AAAA", "CNAME", "HTTPS", "SVCB", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "NULL",
        "ANY", "NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED",
    ];
    match COMMON.iter().find(|&&word| word == text) {
        Some(&word) => Cow::Borrowed(word),
        None => Cow::Owned(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::recognize;
    use super::*;

    fn run(line: &str) -> Recognized {
        recognize(&Fields::parse(line).unwrap())
    }

    #[test]
    fn an_owned_name_is_normalised_as_a_borrowed_one_is() {
        for name in [
            "api.example.net",
            "API.Example.NET.",
            " api.example.net ",
            "x.",
            "",
            ".",
        ] {
            assert_eq!(normalize_owned_name(name.to_string()), normalize_name(name));
        }
    }

    #[test]
    fn common_dns_words_are_static_and_others_kept_as_written() {
        assert!(matches!(dns_word("AAAA"), Cow::Borrowed("AAAA")));
        assert!(matches!(dns_word("NXDOMAIN"), Cow::Borrowed("NXDOMAIN")));
        assert_eq!(dns_word("aaaa"), "aaaa");
        assert!(matches!(dns_word("TYPE65534"), Cow::Owned(_)));
        assert_eq!(dns_word("TYPE65534"), "TYPE65534");
    }

    #[test]
    fn decodes_answers_and_normalises_the_name() {
        let Recognized::Event(Event::Dns(q)) = run(
            r#"{"type":"dns","ts":"2026-11-24T14:30:05Z","client_ip":"10.20.0.15","resolver_ip":"10.0.0.53","qname":"API.Internal.Example.NET.","qtype":"A","rcode":"NOERROR","answers":[{"data":"93.184.216.34","ttl":300},"93.184.216.35"]}"#,
        ) else {
            panic!()
        };
        assert_eq!(q.qname, "api.internal.example.net");
        assert_eq!(
            q.answers,
            vec![
                DnsAnswer {
                    data: "93.184.216.34".into(),
                    ttl: 300
                },
                DnsAnswer {
                    data: "93.184.216.35".into(),
                    ttl: 0
                }
            ]
        );
        assert_eq!(q.qtype.as_deref(), Some("A"));
    }

    #[test]
    fn bad_answers_are_named() {
        match run(
            r#"{"type":"dns","ts":"2026-11-24T14:30:05Z","client_ip":"10.20.0.15","qname":"a.example","answers":[{"ttl":5}]}"#,
        ) {
            Recognized::Invalid(e) => {
                assert!(e.to_string().contains("field `answers` item 0"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        match run(r#"{"type":"dns","ts":"2026-11-24T14:30:05Z","qname":"a.example"}"#) {
            Recognized::Invalid(e) => assert_eq!(e.field, "client_ip"),
            other => panic!("{other:?}"),
        }
    }
}
