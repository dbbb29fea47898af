//! The typed reads the format decoders make of a record's fields.
//!
//! Each field type ([`Kind`]) says once how it is read from any JSON value and
//! how a wrong one is described; [`Reader`] (top-level fields), [`Item`]
//! (members of an array's objects) and [`Reader::nested_read`] (members of an
//! object field) differ only in how they name the field in the error.

use super::fields::{Fields, Key, Value};
use super::{DecodeError, Proto, Stream};
use crate::net::Destination;
use crate::text::trimmed;
use crate::time::Timestamp;
use std::net::IpAddr;

/// A field type the decoders read.
pub(crate) trait Kind {
    type Out;
    /// What a wrong value is not, e.g. `is not a port number 0-65535`.
    const EXPECTED: &'static str;
    fn parse(v: &Value) -> Option<Self::Out>;
}

/// Declares each field kind: its output type, how it parses, what a wrong value is not.
macro_rules! kinds {
    ($($(#[$doc:meta])* $kind:ident: $out:ty = $parse:expr, $expected:literal;)*) => {$(
        $(#[$doc])*
        pub(crate) struct $kind;

        impl Kind for $kind {
            type Out = $out;
            const EXPECTED: &'static str = $expected;
            fn parse(v: &Value) -> Option<$out> {
                $parse(v)
            }
        }
    )*};
}

kinds! {
    /// An RFC 3339 time or an epoch number (seconds, milli-, micro- or nanoseconds).
    Time: Timestamp = parse_timestamp, "is not an RFC 3339 time or epoch number";
    /// An IP address (IPv4-mapped IPv6 folded to IPv4).
    Ip: IpAddr = parse_ip, "is not an IP address";
    Port: u16 = parse_port, "is not a port number 0-65535";
    /// A non-negative integer, also from a string of digits.
    Count: u64 = Value::as_u64, "is not a non-negative integer";
    /// TCP flags as exporters write them: a number (goflow2), a decimal or
    /// `0x` hex string (pmacct), or nfdump's letters (`...AP.SF`).
    TcpFlags: u8 = parse_tcp_flags, "is not TCP flags (a number or nfdump's letters)";
    /// A protocol name or IANA number.
    Protocol: Proto = parse_proto, "is not a protocol name or number";
}

/// Reads `v` as `K`, or says what was wrong with it for `error` to place.
fn read_as<K: Kind>(v: &Value) -> Result<K::Out, String> {
    K::parse(v).ok_or_else(|| format!("{}: {}", K::EXPECTED, v.preview()))
}

/// Field readers shared by the format decoders; each names the field on failure.
pub(crate) struct Reader<'r, 'a> {
    pub fields: &'r Fields<'a>,
    pub stream: Stream,
    pub format: &'static str,
}

impl<'r, 'a> Reader<'r, 'a> {
    pub fn error(&self, key: Key, problem: impl Into<String>) -> DecodeError {
        DecodeError {
            stream: self.stream,
            format: self.format,
            field: key.name(),
            problem: problem.into(),
        }
    }

    fn present(&self, key: Key) -> Option<&'r Value<'a>> {
        self.fields.get(key).filter(|v| **v != Value::Null)
    }

    pub fn required<T>(
        &self,
        key: Key,
        read: impl Fn(&Self, Key) -> Result<Option<T>, DecodeError>,
    ) -> Result<T, DecodeError> {
        read(self, key)?.ok_or_else(|| self.error(key, "is missing"))
    }

    /// A top-level field as `K`; absent or null is `None`.
    pub fn read<K: Kind>(&self, key: Key) -> Result<Option<K::Out>, DecodeError> {
        self.present(key)
            .map(|v| read_as::<K>(v).map_err(|why| self.error(key, why)))
            .transpose()
    }

    pub fn string(&self, key: Key) -> Result<Option<String>, DecodeError> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Str(s)) if trimmed(s).is_empty() => Err(self.error(key, "is empty")),
            Some(Value::Str(s)) => Ok(Some(s.to_string())),
            // Numeric ids are common (`"agent_id": 42`): accept them as text.
            Some(Value::UInt(v)) => Ok(Some(v.to_string())),
            Some(Value::Int(v)) => Ok(Some(v.to_string())),
            Some(v) => Err(self.error(key, format!("must be a string, found {}", v.type_name()))),
        }
    }

    pub fn destination(&self, key: Key) -> Result<Option<Destination>, DecodeError> {
        match self.string(key)? {
            None => Ok(None),
            Some(text) => Destination::parse(&text)
                .map(Some)
                .map_err(|why| self.error(key, why)),
        }
    }

    /// The items of an array field, each read by `read`, at most `max` of them.
    pub fn items<T>(
        &self,
        key: Key,
        max: usize,
        read: impl Fn(&Item) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        match self.fields.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::List(items)) if items.len() > max => Err(self.error(
                key,
                format!("holds {} items, more than the {max} accepted", items.len()),
            )),
            Some(Value::List(items)) => items
                .iter()
                .enumerate()
                .map(|(index, value)| {
                    read(&Item {
                        reader: self,
                        key,
                        index,
                        value,
                    })
                })
                .collect(),
            Some(other) => Err(self.error(
                key,
                format!("must be an array, found {}", other.type_name()),
            )),
        }
    }
}

/// One object in an array field; errors name the array, the index and the inner field.
pub(crate) struct Item<'i, 'r, 'a> {
    pub(super) reader: &'i Reader<'r, 'a>,
    pub(super) key: Key,
    pub(super) index: usize,
    pub(super) value: &'i Value<'a>,
}

impl Item<'_, '_, '_> {
    pub fn error(&self, name: &str, problem: impl std::fmt::Display) -> DecodeError {
        self.reader
            .error(self.key, format!("item {}: `{name}` {problem}", self.index))
    }

    fn present(&self, name: &str) -> Result<Option<&Value<'_>>, DecodeError> {
        match self.value {
            Value::Map(_) => Ok(self.value.get(name).filter(|v| **v != Value::Null)),
            other => Err(self.reader.error(
                self.key,
                format!(
                    "item {} must be an object, found {}",
                    self.index,
                    other.type_name()
                ),
            )),
        }
    }

    /// A member of the item as `K`; absent or null is `None`.
    pub fn read<K: Kind>(&self, name: &str) -> Result<Option<K::Out>, DecodeError> {
        self.present(name)?
            .map(|v| read_as::<K>(v).map_err(|why| self.error(name, why)))
            .transpose()
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, DecodeError> {
        match self.present(name)? {
            None => Ok(None),
            Some(Value::Str(s)) if !trimmed(s).is_empty() => Ok(Some(trimmed(s).to_string())),
            Some(v) => Err(self.error(
                name,
                format!("must be a non-empty string, found {}", v.preview()),
            )),
        }
    }
}

impl Reader<'_, '_> {
    /// A member of an object field (`flow.start`); errors name both.
    pub fn nested<'v>(
        &'v self,
        key: Key,
        name: &str,
    ) -> Result<Option<&'v Value<'v>>, DecodeError> {
        match self.fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(obj @ Value::Map(_)) => Ok(obj.get(name).filter(|v| **v != Value::Null)),
            Some(other) => Err(self.error(
                key,
                format!("must be an object, found {}", other.type_name()),
            )),
        }
    }

    /// A member of an object field as `K`.
    pub fn nested_read<K: Kind>(
        &self,
        key: Key,
        name: &str,
    ) -> Result<Option<K::Out>, DecodeError> {
        self.nested(key, name)?
            .map(|v| {
                read_as::<K>(v).map_err(|why| self.error(key, format!("has `{name}` that {why}")))
            })
            .transpose()
    }
}

fn parse_timestamp(v: &Value) -> Option<Timestamp> {
    match v {
        Value::Str(s) => Timestamp::parse_rfc3339(trimmed(s)).or_else(|| {
            trimmed(s)
                .parse::<f64>()
                .ok()
                .and_then(Timestamp::from_epoch_number)
        }),
        Value::UInt(n) => Timestamp::from_epoch_integer(*n),
        Value::Int(_) | Value::Float(_) => v.as_f64().and_then(Timestamp::from_epoch_number),
        _ => None,
    }
}

fn parse_port(v: &Value) -> Option<u16> {
    v.as_u64().and_then(|n| u16::try_from(n).ok())
}

fn parse_tcp_flags(v: &Value) -> Option<u8> {
    if let Some(n) = v.as_u64() {
        return u8::try_from(n).ok();
    }
    let s = trimmed(v.as_str()?);
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u8::from_str_radix(hex, 16).ok();
    }
    if let Ok(n) = s.parse::<u8>() {
        return Some(n);
    }
    // nfdump: one position per flag, `.` where unset (`CEUAPRSF`, older `UAPRSF`).
    s.bytes().try_fold(0u8, |flags, c| {
        let bit = match c {
            b'.' => 0,
            b'F' => 0x01,
            b'S' => 0x02,
            b'R' => 0x04,
            b'P' => 0x08,
            b'A' => 0x10,
            b'U' => 0x20,
            b'E' => 0x40,
            b'C' => 0x80,
            _ => return None,
        };
        Some(flags | bit)
    })
}

fn parse_proto(v: &Value) -> Option<Proto> {
    match v {
        Value::Str(s) => Proto::from_name(trimmed(s)),
        _ => v.as_u64().and_then(Proto::from_number),
    }
}

/// IP text, with IPv4-mapped IPv6 (`::ffff:10.0.0.1`) folded to IPv4 so one
/// host has one key whatever the exporter wrote.
pub(crate) fn parse_ip(v: &Value) -> Option<IpAddr> {
    let s = trimmed(v.as_str()?);
    crate::net::parse_ip(s).map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flags_read_as_every_exporter_writes_them() {
        for (v, flags) in [
            (Value::UInt(27), Some(0x1b)),
            (Value::Str("27".into()), Some(0x1b)),
            (Value::Str("0x12".into()), Some(0x12)),
            (Value::Str("...AP.SF".into()), Some(0x1b)),
            (Value::Str("......S.".into()), Some(0x02)),
            (Value::Str("UAPRSF".into()), Some(0x3f)),
            (Value::Str("........".into()), Some(0)),
            (Value::Str("SYN".into()), None),
            (Value::UInt(300), None),
        ] {
            assert_eq!(parse_tcp_flags(&v), flags, "{v:?}");
        }
    }
}
