//! TTLV, KMIP's binary encoding (KMIP 1.x and 2.0 "Message Encoding"):
//! every item is a 3-byte tag, a 1-byte type, a 4-byte big-endian length
//! and a value padded with zero bytes to a multiple of 8.
//!
//! Decoding treats its input as hostile: every length is checked against
//! its type and against what is left, padding must be zero, booleans 0 or
//! 1, text valid UTF-8, nesting at most [`MAX_DEPTH`] deep and a message at
//! most [`MAX_MESSAGE_LEN`] long; anything else is [`Error::Malformed`],
//! never a panic. Only the types cmek reads and writes are decoded; a
//! response carrying another type (big integers, date-time extended) is
//! malformed to this client.
//!
//! Byte strings may hold key material (a Decrypt response's data), so they
//! are wiped on drop and never printed.

use std::fmt;

use zeroize::Zeroizing;

use crate::{Error, Result};

/// Longest message this client sends or accepts: the messages it
/// exchanges are a few hundred bytes.
pub(crate) const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// Deepest nesting of structures accepted (KMIP messages nest about 6).
pub(crate) const MAX_DEPTH: usize = 16;
/// Length of an item's tag, type and length fields.
pub(crate) const HEADER_LEN: usize = 8;

const WHAT: &str = "KMIP message";

/// The item types (the type byte).
mod kind {
    pub const STRUCTURE: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const LONG_INTEGER: u8 = 0x03;
    pub const ENUMERATION: u8 = 0x05;
    pub const BOOLEAN: u8 = 0x06;
    pub const TEXT_STRING: u8 = 0x07;
    pub const BYTE_STRING: u8 = 0x08;
    pub const DATE_TIME: u8 = 0x09;
    pub const INTERVAL: u8 = 0x0A;
}

/// A decoded or to-be-encoded value.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// Items in order.
    Structure(Vec<Item>),
    /// A signed 32-bit integer.
    Integer(i32),
    /// A signed 64-bit integer.
    LongInteger(i64),
    /// An enumeration's 32-bit value.
    Enumeration(u32),
    /// A boolean.
    Boolean(bool),
    /// UTF-8 text.
    TextString(String),
    /// Bytes, wiped on drop.
    ByteString(Zeroizing<Vec<u8>>),
    /// Seconds since the Unix epoch.
    DateTime(i64),
    /// A duration in seconds.
    Interval(u32),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Structure(items) => f.debug_list().entries(items).finish(),
            Value::Integer(v) => write!(f, "Integer({v})"),
            Value::LongInteger(v) => write!(f, "LongInteger({v})"),
            Value::Enumeration(v) => write!(f, "Enumeration({v:#x})"),
            Value::Boolean(v) => write!(f, "Boolean({v})"),
            Value::TextString(v) => write!(f, "TextString({v:?})"),
            Value::ByteString(v) => write!(f, "ByteString({} bytes)", v.len()),
            Value::DateTime(v) => write!(f, "DateTime({v})"),
            Value::Interval(v) => write!(f, "Interval({v})"),
        }
    }
}

/// A tagged value.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// The 24-bit tag (0x42xxxx for KMIP's own, 0x54xxxx for extensions).
    pub(crate) tag: u32,
    /// The value.
    pub(crate) value: Value,
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06X} {:?}", self.tag, self.value)
    }
}

impl Item {
    /// A structure of `items`.
    pub(crate) fn structure(tag: u32, items: Vec<Item>) -> Self {
        Self {
            tag,
            value: Value::Structure(items),
        }
    }
    /// An integer.
    pub(crate) fn integer(tag: u32, v: i32) -> Self {
        Self {
            tag,
            value: Value::Integer(v),
        }
    }
    /// An enumeration.
    pub(crate) fn enumeration(tag: u32, v: u32) -> Self {
        Self {
            tag,
            value: Value::Enumeration(v),
        }
    }
    /// A boolean.
    pub(crate) fn boolean(tag: u32, v: bool) -> Self {
        Self {
            tag,
            value: Value::Boolean(v),
        }
    }
    /// A text string.
    pub(crate) fn text(tag: u32, v: impl Into<String>) -> Self {
        Self {
            tag,
            value: Value::TextString(v.into()),
        }
    }
    /// A byte string (copied into a buffer wiped on drop).
    pub(crate) fn bytes(tag: u32, v: &[u8]) -> Self {
        Self {
            tag,
            value: Value::ByteString(Zeroizing::new(v.to_vec())),
        }
    }

    /// The items of a structure, or a malformed-message error naming `tag`.
    pub(crate) fn items(&self) -> Result<&[Item]> {
        match &self.value {
            Value::Structure(items) => Ok(items),
            _ => Err(wrong_type(self.tag, "a structure")),
        }
    }

    /// The only child tagged `tag`, if any; more than one is malformed.
    pub(crate) fn child(&self, tag: u32) -> Result<Option<&Item>> {
        let mut found = None;
        for item in self.items()? {
            if item.tag == tag {
                if found.is_some() {
                    return Err(Error::malformed(
                        WHAT,
                        format!("tag {tag:06X} repeated in {:06X}", self.tag),
                    ));
                }
                found = Some(item);
            }
        }
        Ok(found)
    }

    /// The only child tagged `tag`; missing or repeated is malformed.
    pub(crate) fn required(&self, tag: u32) -> Result<&Item> {
        self.child(tag)?.ok_or_else(|| {
            Error::malformed(WHAT, format!("tag {tag:06X} missing in {:06X}", self.tag))
        })
    }

    /// Every child tagged `tag`, in order.
    pub(crate) fn children(&self, tag: u32) -> Result<impl Iterator<Item = &Item>> {
        Ok(self.items()?.iter().filter(move |i| i.tag == tag))
    }

    /// This item's enumeration value.
    pub(crate) fn as_enum(&self) -> Result<u32> {
        match self.value {
            Value::Enumeration(v) => Ok(v),
            _ => Err(wrong_type(self.tag, "an enumeration")),
        }
    }

    /// This item's integer value.
    pub(crate) fn as_integer(&self) -> Result<i32> {
        match self.value {
            Value::Integer(v) => Ok(v),
            _ => Err(wrong_type(self.tag, "an integer")),
        }
    }

    /// This item's text.
    pub(crate) fn as_text(&self) -> Result<&str> {
        match &self.value {
            Value::TextString(v) => Ok(v),
            _ => Err(wrong_type(self.tag, "a text string")),
        }
    }

    /// This item's bytes.
    pub(crate) fn as_bytes(&self) -> Result<&[u8]> {
        match &self.value {
            Value::ByteString(v) => Ok(v),
            _ => Err(wrong_type(self.tag, "a byte string")),
        }
    }

    /// The TTLV encoding of this item.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] past [`MAX_MESSAGE_LEN`] bytes.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        if out.len() > MAX_MESSAGE_LEN {
            return Err(Error::LimitExceeded {
                what: "KMIP request length",
                limit: MAX_MESSAGE_LEN as u64,
            });
        }
        Ok(out)
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&self.tag.to_be_bytes()[1..]);
        let start = out.len();
        let (kind, fixed): (u8, Option<[u8; 8]>) = match &self.value {
            Value::Structure(_) => (kind::STRUCTURE, None),
            Value::Integer(v) => (kind::INTEGER, Some(four(v.to_be_bytes()))),
            Value::LongInteger(v) => (kind::LONG_INTEGER, Some(v.to_be_bytes())),
            Value::Enumeration(v) => (kind::ENUMERATION, Some(four(v.to_be_bytes()))),
            Value::Boolean(v) => (kind::BOOLEAN, Some(u64::from(*v).to_be_bytes())),
            Value::TextString(_) => (kind::TEXT_STRING, None),
            Value::ByteString(_) => (kind::BYTE_STRING, None),
            Value::DateTime(v) => (kind::DATE_TIME, Some(v.to_be_bytes())),
            Value::Interval(v) => (kind::INTERVAL, Some(four(v.to_be_bytes()))),
        };
        out.push(kind);
        match (&self.value, fixed) {
            (Value::Integer(_) | Value::Enumeration(_) | Value::Interval(_), Some(b)) => {
                out.extend_from_slice(&4u32.to_be_bytes());
                out.extend_from_slice(&b);
            }
            (_, Some(b)) => {
                out.extend_from_slice(&8u32.to_be_bytes());
                out.extend_from_slice(&b);
            }
            (Value::Structure(items), None) => {
                let len_at = out.len();
                out.extend_from_slice(&[0; 4]);
                for item in items {
                    item.encode_into(out)?;
                }
                let len = length_field(out.len() - len_at - 4)?;
                out[len_at..len_at + 4].copy_from_slice(&len);
            }
            (Value::TextString(s), None) => put_padded(out, s.as_bytes())?,
            (Value::ByteString(b), None) => put_padded(out, b)?,
            (_, None) => unreachable!("every fixed-size type has its bytes"),
        }
        debug_assert!((out.len() - start + 3).is_multiple_of(8));
        Ok(())
    }
}

/// A 4-byte value and its 4 bytes of padding.
fn four(b: [u8; 4]) -> [u8; 8] {
    [b[0], b[1], b[2], b[3], 0, 0, 0, 0]
}

fn length_field(len: usize) -> Result<[u8; 4]> {
    u32::try_from(len)
        .ok()
        .filter(|_| len <= MAX_MESSAGE_LEN)
        .map(u32::to_be_bytes)
        .ok_or(Error::LimitExceeded {
            what: "KMIP request length",
            limit: MAX_MESSAGE_LEN as u64,
        })
}

fn put_padded(out: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    out.extend_from_slice(&length_field(bytes.len())?);
    out.extend_from_slice(bytes);
    out.resize(out.len() + padding(bytes.len()), 0);
    Ok(())
}

/// Zero bytes after a value of `len` bytes, to the next multiple of 8.
fn padding(len: usize) -> usize {
    (8 - len % 8) % 8
}

fn wrong_type(tag: u32, expected: &str) -> Error {
    Error::malformed(WHAT, format!("tag {tag:06X} is not {expected}"))
}

/// The total length of the message whose first [`HEADER_LEN`] bytes are
/// `header`: what a reader must read in all. A message must be one
/// structure within [`MAX_MESSAGE_LEN`].
///
/// # Errors
/// [`Error::Malformed`] for a header that cannot start a message.
pub(crate) fn message_len(header: &[u8; HEADER_LEN]) -> Result<usize> {
    if header[3] != kind::STRUCTURE {
        return Err(Error::malformed(WHAT, "does not start with a structure"));
    }
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > MAX_MESSAGE_LEN - HEADER_LEN {
        return Err(Error::malformed(
            WHAT,
            format!("{len} bytes long, more than {MAX_MESSAGE_LEN}"),
        ));
    }
    if !len.is_multiple_of(8) {
        return Err(Error::malformed(
            WHAT,
            "structure length is not a multiple of 8",
        ));
    }
    Ok(HEADER_LEN + len)
}

/// Decodes exactly one item filling all of `bytes`.
///
/// # Errors
/// [`Error::Malformed`] for anything but one well-formed item.
pub(crate) fn decode(bytes: &[u8]) -> Result<Item> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(Error::malformed(
            WHAT,
            format!("{} bytes long, more than {MAX_MESSAGE_LEN}", bytes.len()),
        ));
    }
    let mut rest = bytes;
    let item = decode_item(&mut rest, 0)?;
    if !rest.is_empty() {
        return Err(Error::malformed(
            WHAT,
            format!("{} bytes after the message", rest.len()),
        ));
    }
    Ok(item)
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if rest.len() < n {
        return Err(Error::malformed(
            WHAT,
            format!("truncated: {n} bytes needed, {} left", rest.len()),
        ));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn decode_item(rest: &mut &[u8], depth: usize) -> Result<Item> {
    let header = take(rest, HEADER_LEN)?;
    let tag = u32::from_be_bytes([0, header[0], header[1], header[2]]);
    if header[0] != 0x42 && header[0] != 0x54 {
        return Err(Error::malformed(
            WHAT,
            format!("tag {tag:06X} out of range"),
        ));
    }
    let kind = header[3];
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let fixed_len = match kind {
        kind::INTEGER | kind::ENUMERATION | kind::INTERVAL => Some(4),
        kind::LONG_INTEGER | kind::BOOLEAN | kind::DATE_TIME => Some(8),
        kind::STRUCTURE | kind::TEXT_STRING | kind::BYTE_STRING => None,
        other => {
            return Err(Error::malformed(
                WHAT,
                format!("tag {tag:06X} has type {other:#04x}, which this client does not read"),
            ))
        }
    };
    if fixed_len.is_some_and(|fixed| fixed != len) {
        return Err(Error::malformed(
            WHAT,
            format!("tag {tag:06X} of type {kind:#04x} has length {len}"),
        ));
    }
    if kind == kind::STRUCTURE && !len.is_multiple_of(8) {
        return Err(Error::malformed(
            WHAT,
            format!("structure {tag:06X} length {len} is not a multiple of 8"),
        ));
    }
    let pad = padding(len);
    // Checked before taking, so a huge length cannot overflow the sum.
    if len > rest.len() || pad > rest.len() - len {
        return Err(Error::malformed(
            WHAT,
            format!("tag {tag:06X} claims {len} bytes, {} left", rest.len()),
        ));
    }
    let body = take(rest, len)?;
    if take(rest, pad)?.iter().any(|&b| b != 0) {
        return Err(Error::malformed(
            WHAT,
            format!("tag {tag:06X} has non-zero padding"),
        ));
    }
    let word4 = || i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let word8 = || {
        let mut b = [0u8; 8];
        b.copy_from_slice(body);
        i64::from_be_bytes(b)
    };
    let value = match kind {
        kind::STRUCTURE => {
            if depth >= MAX_DEPTH {
                return Err(Error::malformed(
                    WHAT,
                    format!("structures nested deeper than {MAX_DEPTH}"),
                ));
            }
            let mut inner = body;
            let mut items = Vec::new();
            while !inner.is_empty() {
                items.push(decode_item(&mut inner, depth + 1)?);
            }
            Value::Structure(items)
        }
        kind::INTEGER => Value::Integer(word4()),
        kind::ENUMERATION => Value::Enumeration(word4() as u32),
        kind::INTERVAL => Value::Interval(word4() as u32),
        kind::LONG_INTEGER => Value::LongInteger(word8()),
        kind::DATE_TIME => Value::DateTime(word8()),
        kind::BOOLEAN => match word8() {
            0 => Value::Boolean(false),
            1 => Value::Boolean(true),
            other => {
                return Err(Error::malformed(
                    WHAT,
                    format!("boolean {tag:06X} is {other}"),
                ))
            }
        },
        kind::TEXT_STRING => Value::TextString(
            std::str::from_utf8(body)
                .map_err(|_| Error::malformed(WHAT, format!("text {tag:06X} is not UTF-8")))?
                .to_owned(),
        ),
        _ => Value::ByteString(Zeroizing::new(body.to_vec())),
    };
    Ok(Item { tag, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_the_specification_shows() {
        // KMIP 1.x "Message Encoding" examples: an integer 8, an
        // enumeration 255, a boolean true, a text "Hello World", a byte
        // string 01 02 03, and a structure of an enumeration and an integer.
        let hex = |item: Item| hex_of(&item.encode().unwrap());
        assert_eq!(
            hex(Item::integer(0x420020, 8)),
            "42002002000000040000000800000000"
        );
        assert_eq!(
            hex(Item::enumeration(0x420020, 255)),
            "4200200500000004000000ff00000000"
        );
        assert_eq!(
            hex(Item::boolean(0x420020, true)),
            "42002006000000080000000000000001"
        );
        assert_eq!(
            hex(Item::text(0x420020, "Hello World")),
            "420020070000000b48656c6c6f20576f726c640000000000"
        );
        assert_eq!(
            hex(Item::bytes(0x420020, &[1, 2, 3])),
            "42002008000000030102030000000000"
        );
        assert_eq!(
            hex(Item::structure(
                0x420020,
                vec![
                    Item::enumeration(0x420004, 254),
                    Item::integer(0x420005, 255)
                ]
            )),
            "42002001000000204200040500000004000000fe000000004200050200000004000000ff00000000"
        );
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn sample() -> Item {
        Item::structure(
            0x42007B,
            vec![
                Item::integer(0x42006A, 1),
                Item::enumeration(0x42007F, 0),
                Item::boolean(0x4200C5, false),
                Item::text(0x420094, "7"),
                Item::bytes(0x4200C2, &[9; 33]),
                Item {
                    tag: 0x420092,
                    value: Value::DateTime(1_700_000_000),
                },
                Item {
                    tag: 0x540001,
                    value: Value::LongInteger(-5),
                },
                Item {
                    tag: 0x420089,
                    value: Value::Interval(60),
                },
                Item::structure(0x42000F, vec![]),
            ],
        )
    }

    #[test]
    fn round_trips() {
        let item = sample();
        let bytes = item.encode().unwrap();
        assert_eq!(bytes.len() % 8, 0);
        let header: [u8; 8] = bytes[..8].try_into().unwrap();
        assert_eq!(message_len(&header).unwrap(), bytes.len());
        assert_eq!(decode(&bytes).unwrap(), item);
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let bytes = sample().encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(
                matches!(decode(&bytes[..cut]), Err(Error::Malformed { .. })),
                "{cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn hostile_fields_are_refused() {
        let int = Item::integer(0x420020, 8).encode().unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("bad tag", {
                let mut b = int.clone();
                b[0] = 0x43;
                b
            }),
            ("unknown type", {
                let mut b = int.clone();
                b[3] = 0x04;
                b
            }),
            ("wrong fixed length", {
                let mut b = int.clone();
                b[7] = 8;
                b
            }),
            ("non-zero padding", {
                let mut b = int.clone();
                b[15] = 1;
                b
            }),
            ("boolean 2", {
                let mut b = Item::boolean(0x420020, true).encode().unwrap();
                b[15] = 2;
                b
            }),
            ("text not UTF-8", {
                let mut b = Item::text(0x420020, "ab").encode().unwrap();
                b[8] = 0xff;
                b
            }),
            ("huge length", {
                let mut b = Item::bytes(0x420020, &[1]).encode().unwrap();
                b[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
                b
            }),
            ("structure length not a multiple of 8", {
                let mut b = Item::structure(0x420020, vec![Item::integer(0x420021, 1)])
                    .encode()
                    .unwrap();
                b[7] = 12;
                b
            }),
        ];
        for (what, bytes) in cases {
            assert!(
                matches!(decode(&bytes), Err(Error::Malformed { .. })),
                "{what}"
            );
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let mut item = Item::integer(0x420020, 1);
        for _ in 0..MAX_DEPTH {
            item = Item::structure(0x420020, vec![item]);
        }
        assert!(decode(&item.encode().unwrap()).is_ok());
        let deeper = Item::structure(0x420020, vec![item]).encode().unwrap();
        let err = decode(&deeper).unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");
    }

    #[test]
    fn message_headers_are_checked() {
        assert!(message_len(&[0x42, 0, 0x7B, 1, 0, 0, 0, 16]).is_ok());
        assert!(message_len(&[0x42, 0, 0x7B, 2, 0, 0, 0, 16]).is_err());
        assert!(message_len(&[0x42, 0, 0x7B, 1, 0, 0, 0, 12]).is_err());
        assert!(message_len(&[0x42, 0, 0x7B, 1, 0xff, 0xff, 0xff, 0xf8]).is_err());
    }

    #[test]
    fn accessors_check_types_and_repetition() {
        let s = Item::structure(
            0x420001,
            vec![
                Item::integer(0x420002, 1),
                Item::text(0x420003, "a"),
                Item::text(0x420003, "b"),
            ],
        );
        assert_eq!(s.required(0x420002).unwrap().as_integer().unwrap(), 1);
        assert!(s.required(0x420002).unwrap().as_text().is_err());
        assert!(s.child(0x420003).is_err());
        assert_eq!(s.children(0x420003).unwrap().count(), 2);
        assert!(s.required(0x420004).is_err());
        assert!(Item::integer(0x420002, 1).items().is_err());
        let secret = format!("{:?}", Item::bytes(0x4200C2, b"key material"));
        assert!(
            !secret.contains("key") && secret.contains("12 bytes"),
            "{secret}"
        );
    }
}
