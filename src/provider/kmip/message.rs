//! The KMIP requests cmek sends and the responses it reads: one operation
//! per message (batch count 1), protocol version 1.4, and only the fields
//! cmek needs — Create (an AES-256 symmetric key), Activate, Revoke,
//! Get Attributes, Encrypt and Decrypt (AES-GCM with additional data).
//!
//! Responses are checked before anything is read from them: one batch
//! item, for the operation asked, with a result status; a failed
//! operation becomes a [`Failure`] carrying the server's result reason
//! and message. Tags and enumeration values are those of the KMIP 1.4
//! specification.

use super::ttlv::{Item, Value};
use crate::{Error, Result};

const WHAT: &str = "KMIP response";

/// The protocol version requested: 1.4 is the first with authenticated
/// encryption fields (additional data, tag) on Encrypt and Decrypt.
pub(crate) const PROTOCOL_VERSION: (i32, i32) = (1, 4);

/// Tags (KMIP 1.4, section 9.1.3.1).
pub(crate) mod tag {
    pub const ATTRIBUTE: u32 = 0x420008;
    pub const ATTRIBUTE_NAME: u32 = 0x42000A;
    pub const ATTRIBUTE_VALUE: u32 = 0x42000B;
    pub const BATCH_COUNT: u32 = 0x42000D;
    pub const BATCH_ITEM: u32 = 0x42000F;
    pub const BLOCK_CIPHER_MODE: u32 = 0x420011;
    pub const CRYPTOGRAPHIC_ALGORITHM: u32 = 0x420028;
    pub const CRYPTOGRAPHIC_PARAMETERS: u32 = 0x42002B;
    pub const IV_COUNTER_NONCE: u32 = 0x42003D;
    pub const MAXIMUM_RESPONSE_SIZE: u32 = 0x420050;
    pub const NAME_TYPE: u32 = 0x420054;
    pub const NAME_VALUE: u32 = 0x420055;
    pub const OBJECT_TYPE: u32 = 0x420057;
    pub const OPERATION: u32 = 0x42005C;
    pub const PROTOCOL_VERSION: u32 = 0x420069;
    pub const PROTOCOL_VERSION_MAJOR: u32 = 0x42006A;
    pub const PROTOCOL_VERSION_MINOR: u32 = 0x42006B;
    pub const REQUEST_HEADER: u32 = 0x420077;
    pub const REQUEST_MESSAGE: u32 = 0x420078;
    pub const REQUEST_PAYLOAD: u32 = 0x420079;
    pub const RESPONSE_HEADER: u32 = 0x42007A;
    pub const RESPONSE_MESSAGE: u32 = 0x42007B;
    pub const RESPONSE_PAYLOAD: u32 = 0x42007C;
    pub const RESULT_MESSAGE: u32 = 0x42007D;
    pub const RESULT_REASON: u32 = 0x42007E;
    pub const RESULT_STATUS: u32 = 0x42007F;
    pub const REVOCATION_REASON: u32 = 0x420081;
    pub const REVOCATION_REASON_CODE: u32 = 0x420082;
    pub const TEMPLATE_ATTRIBUTE: u32 = 0x420091;
    pub const UNIQUE_IDENTIFIER: u32 = 0x420094;
    pub const DATA: u32 = 0x4200C2;
    pub const RANDOM_IV: u32 = 0x4200C5;
    pub const TAG_LENGTH: u32 = 0x4200CE;
    pub const AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA: u32 = 0x4200FE;
    pub const AUTHENTICATED_ENCRYPTION_TAG: u32 = 0x4200FF;
}

/// The operations cmek calls (Operation enumeration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Create = 0x01,
    GetAttributes = 0x0B,
    Activate = 0x12,
    Revoke = 0x13,
    Encrypt = 0x1F,
    Decrypt = 0x20,
}

impl Operation {
    /// The operation's name in the specification.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Operation::Create => "Create",
            Operation::GetAttributes => "Get Attributes",
            Operation::Activate => "Activate",
            Operation::Revoke => "Revoke",
            Operation::Encrypt => "Encrypt",
            Operation::Decrypt => "Decrypt",
        }
    }
}

/// Object Type: Symmetric Key.
const SYMMETRIC_KEY: u32 = 0x02;
/// Cryptographic Algorithm: AES.
pub(crate) const AES: u32 = 0x03;
/// Block Cipher Mode: GCM.
const GCM: u32 = 0x09;
/// Cryptographic Usage Mask bits: Encrypt, Decrypt.
pub(crate) const USAGE_ENCRYPT: i32 = 0x04;
/// See [`USAGE_ENCRYPT`].
pub(crate) const USAGE_DECRYPT: i32 = 0x08;
/// Name Type: Uninterpreted Text String.
const UNINTERPRETED_TEXT: u32 = 0x01;
/// Revocation Reason Code: Cessation of Operation.
const CESSATION_OF_OPERATION: u32 = 0x06;
/// Result Status: Success.
const SUCCESS: u32 = 0x00;
/// Length of the GCM tag asked for and accepted.
pub(crate) const TAG_LEN: usize = 16;

/// Result Reason values cmek tells apart (KMIP 1.4, 9.1.3.2.29).
pub(crate) mod reason {
    pub const ITEM_NOT_FOUND: u32 = 0x01;
    pub const AUTHENTICATION_NOT_SUCCESSFUL: u32 = 0x03;
    pub const CRYPTOGRAPHIC_FAILURE: u32 = 0x0A;
    pub const PERMISSION_DENIED: u32 = 0x0C;
    pub const GENERAL_FAILURE: u32 = 0x100;

    /// The specification's name of a result reason, for messages.
    pub fn name(reason: u32) -> &'static str {
        match reason {
            0x01 => "Item Not Found",
            0x02 => "Response Too Large",
            0x03 => "Authentication Not Successful",
            0x04 => "Invalid Message",
            0x05 => "Operation Not Supported",
            0x06 => "Missing Data",
            0x07 => "Invalid Field",
            0x08 => "Feature Not Supported",
            0x09 => "Operation Canceled By Requester",
            0x0A => "Cryptographic Failure",
            0x0B => "Illegal Operation",
            0x0C => "Permission Denied",
            0x0D => "Object archived",
            0x0E => "Index Out of Bounds",
            0x0F => "Application Namespace Not Supported",
            0x10 => "Key Format Type Not Supported",
            0x11 => "Key Compression Type Not Supported",
            0x12 => "Encoding Option Error",
            0x13 => "Key Value Not Present",
            0x14 => "Attestation Required",
            0x15 => "Attestation Failed",
            0x16 => "Sensitive",
            0x17 => "Not Extractable",
            0x18 => "Object Already Exists",
            0x100 => "General Failure",
            _ => "unknown result reason",
        }
    }
}

/// The KMIP object states (State enumeration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectState {
    PreActive,
    Active,
    Deactivated,
    Compromised,
    Destroyed,
    DestroyedCompromised,
}

impl ObjectState {
    fn from_enum(v: u32) -> Result<Self> {
        Ok(match v {
            1 => ObjectState::PreActive,
            2 => ObjectState::Active,
            3 => ObjectState::Deactivated,
            4 => ObjectState::Compromised,
            5 => ObjectState::Destroyed,
            6 => ObjectState::DestroyedCompromised,
            other => return Err(Error::malformed(WHAT, format!("unknown state {other}"))),
        })
    }

    /// The specification's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ObjectState::PreActive => "Pre-Active",
            ObjectState::Active => "Active",
            ObjectState::Deactivated => "Deactivated",
            ObjectState::Compromised => "Compromised",
            ObjectState::Destroyed => "Destroyed",
            ObjectState::DestroyedCompromised => "Destroyed Compromised",
        }
    }
}

/// An operation the server refused: its result reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The Result Reason enumeration (0 if the server gave none).
    pub(crate) reason: u32,
    /// The Result Message, if any.
    pub(crate) message: String,
}

/// A request message for one operation with `payload`.
pub(crate) fn request(operation: Operation, payload: Vec<Item>) -> Item {
    let (major, minor) = PROTOCOL_VERSION;
    Item::structure(
        tag::REQUEST_MESSAGE,
        vec![
            Item::structure(
                tag::REQUEST_HEADER,
                vec![
                    Item::structure(
                        tag::PROTOCOL_VERSION,
                        vec![
                            Item::integer(tag::PROTOCOL_VERSION_MAJOR, major),
                            Item::integer(tag::PROTOCOL_VERSION_MINOR, minor),
                        ],
                    ),
                    Item::integer(
                        tag::MAXIMUM_RESPONSE_SIZE,
                        super::ttlv::MAX_MESSAGE_LEN as i32,
                    ),
                    Item::integer(tag::BATCH_COUNT, 1),
                ],
            ),
            Item::structure(
                tag::BATCH_ITEM,
                vec![
                    Item::enumeration(tag::OPERATION, operation as u32),
                    Item::structure(tag::REQUEST_PAYLOAD, payload),
                ],
            ),
        ],
    )
}

fn attribute(name: &str, value: Item) -> Item {
    Item::structure(
        tag::ATTRIBUTE,
        vec![
            Item::text(tag::ATTRIBUTE_NAME, name),
            Item {
                tag: tag::ATTRIBUTE_VALUE,
                value: value.value,
            },
        ],
    )
}

/// Create: an AES-256 symmetric key for Encrypt and Decrypt, named `name`
/// if given.
pub(crate) fn create(name: Option<&str>) -> Item {
    let mut attributes = vec![
        attribute("Cryptographic Algorithm", Item::enumeration(0, AES)),
        attribute("Cryptographic Length", Item::integer(0, 256)),
        attribute(
            "Cryptographic Usage Mask",
            Item::integer(0, USAGE_ENCRYPT | USAGE_DECRYPT),
        ),
    ];
    if let Some(name) = name {
        attributes.push(attribute(
            "Name",
            Item::structure(
                0,
                vec![
                    Item::text(tag::NAME_VALUE, name),
                    Item::enumeration(tag::NAME_TYPE, UNINTERPRETED_TEXT),
                ],
            ),
        ));
    }
    request(
        Operation::Create,
        vec![
            Item::enumeration(tag::OBJECT_TYPE, SYMMETRIC_KEY),
            Item::structure(tag::TEMPLATE_ATTRIBUTE, attributes),
        ],
    )
}

/// An operation on one object named by its unique identifier (Activate).
pub(crate) fn on_object(operation: Operation, uid: &str) -> Item {
    request(operation, vec![Item::text(tag::UNIQUE_IDENTIFIER, uid)])
}

/// Revoke, for cessation of operation: the key becomes Deactivated.
pub(crate) fn revoke(uid: &str) -> Item {
    request(
        Operation::Revoke,
        vec![
            Item::text(tag::UNIQUE_IDENTIFIER, uid),
            Item::structure(
                tag::REVOCATION_REASON,
                vec![Item::enumeration(
                    tag::REVOCATION_REASON_CODE,
                    CESSATION_OF_OPERATION,
                )],
            ),
        ],
    )
}

/// The attributes [`get_attributes`] asks for.
const DESCRIBED: [&str; 5] = [
    "State",
    "Object Type",
    "Cryptographic Algorithm",
    "Cryptographic Length",
    "Cryptographic Usage Mask",
];

/// Get Attributes: the ones [`Described`] reads.
pub(crate) fn get_attributes(uid: &str) -> Item {
    let mut payload = vec![Item::text(tag::UNIQUE_IDENTIFIER, uid)];
    payload.extend(
        DESCRIBED
            .iter()
            .map(|n| Item::text(tag::ATTRIBUTE_NAME, *n)),
    );
    request(Operation::GetAttributes, payload)
}

fn gcm_parameters() -> Item {
    // In the specification's field order: mode, algorithm, random IV, tag length.
    Item::structure(
        tag::CRYPTOGRAPHIC_PARAMETERS,
        vec![
            Item::enumeration(tag::BLOCK_CIPHER_MODE, GCM),
            Item::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, AES),
            Item::boolean(tag::RANDOM_IV, true),
            Item::integer(tag::TAG_LENGTH, TAG_LEN as i32),
        ],
    )
}

/// Encrypt `data` under `uid` with AES-GCM, `aad` as additional data; the
/// server picks the IV.
pub(crate) fn encrypt(uid: &str, data: &[u8], aad: &[u8]) -> Item {
    request(
        Operation::Encrypt,
        vec![
            Item::text(tag::UNIQUE_IDENTIFIER, uid),
            gcm_parameters(),
            Item::bytes(tag::DATA, data),
            Item::bytes(tag::AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA, aad),
        ],
    )
}

/// Decrypt what [`encrypt`] returned.
pub(crate) fn decrypt(uid: &str, data: &[u8], iv: &[u8], aad: &[u8], auth_tag: &[u8]) -> Item {
    request(
        Operation::Decrypt,
        vec![
            Item::text(tag::UNIQUE_IDENTIFIER, uid),
            gcm_parameters(),
            Item::bytes(tag::DATA, data),
            Item::bytes(tag::IV_COUNTER_NONCE, iv),
            Item::bytes(tag::AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA, aad),
            Item::bytes(tag::AUTHENTICATED_ENCRYPTION_TAG, auth_tag),
        ],
    )
}

/// The payload of a response to `operation`, or the server's refusal.
///
/// # Errors
/// [`Error::Malformed`] for a response that is not one well-formed batch
/// item answering `operation`.
pub(crate) fn response(
    message: &Item,
    operation: Operation,
) -> Result<std::result::Result<Item, Failure>> {
    if message.tag != tag::RESPONSE_MESSAGE {
        return Err(Error::malformed(WHAT, "not a response message"));
    }
    let header = message.required(tag::RESPONSE_HEADER)?;
    let count = header.required(tag::BATCH_COUNT)?.as_integer()?;
    let items: Vec<&Item> = message.children(tag::BATCH_ITEM)?.collect();
    if count != 1 || items.len() != 1 {
        return Err(Error::malformed(
            WHAT,
            format!("{} batch items (count {count}), not one", items.len()),
        ));
    }
    let item = items[0];
    if let Some(op) = item.child(tag::OPERATION)? {
        if op.as_enum()? != operation as u32 {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "answers operation {:#x}, not {}",
                    op.as_enum()?,
                    operation.name()
                ),
            ));
        }
    }
    let status = item.required(tag::RESULT_STATUS)?.as_enum()?;
    if status != SUCCESS {
        let reason = match item.child(tag::RESULT_REASON)? {
            Some(r) => r.as_enum()?,
            None => 0,
        };
        let message = match item.child(tag::RESULT_MESSAGE)? {
            Some(m) => m.as_text()?.to_owned(),
            None => String::new(),
        };
        // Pending (2) and undone (3) operations are failures to cmek too:
        // it sends no asynchronous requests.
        return Ok(Err(Failure { reason, message }));
    }
    match item.child(tag::RESPONSE_PAYLOAD)? {
        Some(payload) => {
            payload.items()?;
            Ok(Ok(payload.clone()))
        }
        None => Ok(Ok(Item::structure(tag::RESPONSE_PAYLOAD, Vec::new()))),
    }
}

/// The unique identifier in a Create or Activate response payload.
pub(crate) fn unique_identifier(payload: &Item) -> Result<String> {
    let uid = payload.required(tag::UNIQUE_IDENTIFIER)?.as_text()?;
    if uid.is_empty() || uid.len() > 1024 {
        return Err(Error::malformed(
            WHAT,
            "unique identifier empty or too long",
        ));
    }
    Ok(uid.to_owned())
}

/// What Get Attributes answered about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Described {
    /// Its state.
    pub(crate) state: ObjectState,
    /// Object Type, if reported.
    pub(crate) object_type: Option<u32>,
    /// Cryptographic Algorithm, if reported.
    pub(crate) algorithm: Option<u32>,
    /// Cryptographic Length, if reported.
    pub(crate) length: Option<i32>,
    /// Cryptographic Usage Mask, if reported.
    pub(crate) usage_mask: Option<i32>,
}

impl Described {
    /// Why this object cannot wrap cmek's keys, if it cannot: it must be
    /// an AES-256 symmetric key whose usage mask allows Encrypt and
    /// Decrypt. An attribute the server did not report is not held
    /// against it.
    pub(crate) fn unsuitable(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.object_type.is_some_and(|t| t != SYMMETRIC_KEY) {
            why.push("not a symmetric key".to_owned());
        }
        if self.algorithm.is_some_and(|a| a != AES) {
            why.push("not an AES key".to_owned());
        }
        if let Some(len) = self.length.filter(|&l| l != 256) {
            why.push(format!("{len} bits long, not 256"));
        }
        let both = USAGE_ENCRYPT | USAGE_DECRYPT;
        if self.usage_mask.is_some_and(|m| m & both != both) {
            why.push("its usage mask does not allow both Encrypt and Decrypt".to_owned());
        }
        (!why.is_empty()).then(|| why.join(", "))
    }
}

/// Reads a Get Attributes response payload (KMIP 1.x attribute form).
pub(crate) fn described(payload: &Item) -> Result<Described> {
    let mut state = None;
    let mut out = Described {
        state: ObjectState::PreActive,
        object_type: None,
        algorithm: None,
        length: None,
        usage_mask: None,
    };
    for attr in payload.children(tag::ATTRIBUTE)? {
        let name = attr.required(tag::ATTRIBUTE_NAME)?.as_text()?;
        let value = attr.required(tag::ATTRIBUTE_VALUE)?;
        let as_enum = || match value.value {
            Value::Enumeration(v) => Ok(v),
            _ => Err(Error::malformed(
                WHAT,
                format!("attribute {name:?} is not an enumeration"),
            )),
        };
        let as_int = || match value.value {
            Value::Integer(v) => Ok(v),
            _ => Err(Error::malformed(
                WHAT,
                format!("attribute {name:?} is not an integer"),
            )),
        };
        let repeated = match name {
            "State" => state.replace(ObjectState::from_enum(as_enum()?)?).is_some(),
            "Object Type" => out.object_type.replace(as_enum()?).is_some(),
            "Cryptographic Algorithm" => out.algorithm.replace(as_enum()?).is_some(),
            "Cryptographic Length" => out.length.replace(as_int()?).is_some(),
            "Cryptographic Usage Mask" => out.usage_mask.replace(as_int()?).is_some(),
            // Attributes not asked for are ignored.
            _ => false,
        };
        if repeated {
            return Err(Error::malformed(
                WHAT,
                format!("attribute {name:?} repeated"),
            ));
        }
    }
    out.state = state.ok_or_else(|| Error::malformed(WHAT, "no State attribute"))?;
    Ok(out)
}

/// What Encrypt returned: ciphertext, IV and tag.
pub(crate) struct Encrypted {
    /// The ciphertext.
    pub(crate) data: Vec<u8>,
    /// The IV the server chose.
    pub(crate) iv: Vec<u8>,
    /// The authentication tag.
    pub(crate) tag: Vec<u8>,
}

/// Reads an Encrypt response payload.
pub(crate) fn encrypted(payload: &Item) -> Result<Encrypted> {
    let data = payload.required(tag::DATA)?.as_bytes()?.to_vec();
    let iv = payload
        .child(tag::IV_COUNTER_NONCE)?
        .ok_or_else(|| {
            Error::malformed(
                WHAT,
                "Encrypt returned no IV (the server must generate it: Random IV)",
            )
        })?
        .as_bytes()?
        .to_vec();
    let tag = payload
        .required(tag::AUTHENTICATED_ENCRYPTION_TAG)?
        .as_bytes()?
        .to_vec();
    Ok(Encrypted { data, iv, tag })
}

/// The plaintext of a Decrypt response payload (wiped on drop).
pub(crate) fn decrypted(payload: &Item) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    Ok(zeroize::Zeroizing::new(
        payload.required(tag::DATA)?.as_bytes()?.to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::ttlv::decode;
    use super::*;

    fn response_with(status: u32, extra: Vec<Item>, op: Operation) -> Item {
        let mut batch = vec![
            Item::enumeration(tag::OPERATION, op as u32),
            Item::enumeration(tag::RESULT_STATUS, status),
        ];
        batch.extend(extra);
        Item::structure(
            tag::RESPONSE_MESSAGE,
            vec![
                Item::structure(
                    tag::RESPONSE_HEADER,
                    vec![Item::integer(tag::BATCH_COUNT, 1)],
                ),
                Item::structure(tag::BATCH_ITEM, batch),
            ],
        )
    }

    #[test]
    fn requests_encode_and_decode() {
        for message in [
            create(Some("orders")),
            create(None),
            on_object(Operation::Activate, "1"),
            revoke("1"),
            get_attributes("1"),
            encrypt("1", &[1; 32], b"aad"),
            decrypt("1", &[1; 32], &[2; 16], b"aad", &[3; 16]),
        ] {
            let bytes = message.encode().unwrap();
            assert_eq!(decode(&bytes).unwrap(), message);
        }
    }

    #[test]
    fn failures_carry_reason_and_message() {
        let failed = response_with(
            1,
            vec![
                Item::enumeration(tag::RESULT_REASON, reason::ITEM_NOT_FOUND),
                Item::text(tag::RESULT_MESSAGE, "no such object"),
            ],
            Operation::Encrypt,
        );
        let out = response(&failed, Operation::Encrypt).unwrap().unwrap_err();
        assert_eq!(out.reason, reason::ITEM_NOT_FOUND);
        assert_eq!(out.message, "no such object");
        assert!(
            response(&failed, Operation::Decrypt).is_err(),
            "wrong operation"
        );
    }

    #[test]
    fn attributes_are_read_strictly() {
        let attr = |name: &str, value: Item| attribute(name, value);
        let payload = Item::structure(
            tag::RESPONSE_PAYLOAD,
            vec![
                Item::text(tag::UNIQUE_IDENTIFIER, "1"),
                attr("State", Item::enumeration(0, 3)),
                attr("Cryptographic Length", Item::integer(0, 128)),
                attr("x-custom", Item::text(0, "ignored")),
            ],
        );
        let d = described(&payload).unwrap();
        assert_eq!(d.state, ObjectState::Deactivated);
        assert_eq!(d.unsuitable().unwrap(), "128 bits long, not 256");
        let repeated = Item::structure(
            tag::RESPONSE_PAYLOAD,
            vec![
                attr("State", Item::enumeration(0, 2)),
                attr("State", Item::enumeration(0, 2)),
            ],
        );
        assert!(described(&repeated).is_err());
        let bad = Item::structure(
            tag::RESPONSE_PAYLOAD,
            vec![attr("State", Item::enumeration(0, 9))],
        );
        assert!(described(&bad).is_err());
        let none = Item::structure(tag::RESPONSE_PAYLOAD, vec![]);
        assert!(described(&none).is_err());
    }

    #[test]
    fn batches_must_hold_one_item() {
        let mut two = response_with(0, vec![], Operation::Create);
        if let Value::Structure(items) = &mut two.value {
            let again = items[1].clone();
            items.push(again);
        }
        assert!(response(&two, Operation::Create).is_err());
    }
}
