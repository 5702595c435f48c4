//! The key material of Parquet's key-management tools, as JSON: parsing
//! (of hostile bytes) and writing, and the local AES-GCM wrap of a data key
//! under a key-encryption key. Layout in `docs/FORMAT.md`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::aead;
use serde_json::{Map, Value};

use super::key::DataKey;
use crate::{Error, Result};

/// The key-material type every field set here belongs to.
pub const KEY_MATERIAL_TYPE: &str = "PKMT1";

/// The key id, in an external key-material file, of the footer key.
pub const FOOTER_KEY_ID_IN_FILE: &str = "footerKey";

/// The prefix of the key ids, in an external key-material file, of column
/// keys (`columnKey0`, `columnKey1`, ...).
pub const COLUMN_KEY_ID_PREFIX: &str = "columnKey";

/// The longest key metadata or key material read (64 KiB): real ones are
/// a few hundred bytes; anything longer is refused before it is parsed.
pub const MAX_KEY_METADATA_LEN: usize = 64 << 10;

/// Length of a key-encryption key's id, in bytes (before base64).
pub(crate) const KEK_ID_LEN: usize = 16;
/// Length of a key-encryption key, in bytes.
pub(crate) const KEK_LEN: usize = 16;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const WHAT: &str = "Parquet key material";

/// How a data key is wrapped in one [`KeyMaterial`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wrapping {
    /// The master key wraps the data key itself (`doubleWrapping: false`).
    Single,
    /// The master key wraps a key-encryption key (KEK), which wraps the
    /// data key locally with AES-GCM (`doubleWrapping: true`).
    Double {
        /// The KEK's id (`keyEncryptionKeyID`), base64 as stored; its
        /// decoded bytes are the local wrap's associated data.
        kek_id: String,
        /// The KEK wrapped by the KMS client (`wrappedKEK`).
        wrapped_kek: String,
    },
}

/// One key's material: which master key wraps it and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMaterial {
    /// True for the footer key (`isFooterKey`).
    pub is_footer_key: bool,
    /// `kmsInstanceID` and `kmsInstanceURL`, written with the footer key
    /// only.
    pub kms_instance: Option<(String, String)>,
    /// The master key's id (`masterKeyID`): a name the key provider
    /// resolves with [`KeyProvider::key_ref`](crate::KeyProvider::key_ref).
    pub master_key_id: String,
    /// The wrapped data key (`wrappedDEK`): the KMS client's string in
    /// single wrapping, base64 of the local AES-GCM wrap in double wrapping.
    pub wrapped_dek: String,
    /// Single or double wrapping.
    pub wrapping: Wrapping,
}

/// What a column's or the footer's key metadata holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMetadata {
    /// The key material itself (`internalStorage: true`).
    Internal(KeyMaterial),
    /// A reference to the key material in the file's external
    /// key-material file (`internalStorage: false`, `keyReference`).
    External {
        /// The key's id in the key-material file, e.g. `footerKey`.
        key_reference: String,
    },
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>> {
    if bytes.len() > MAX_KEY_METADATA_LEN {
        return Err(Error::LimitExceeded {
            what: "Parquet key metadata length",
            limit: MAX_KEY_METADATA_LEN as u64,
        });
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::malformed(WHAT, "not a JSON object")),
        Err(e) => Err(Error::malformed(WHAT, format!("not JSON: {e}"))),
    }
}

fn string(map: &Map<String, Value>, field: &str) -> Result<String> {
    match map.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Error::malformed(WHAT, format!("{field} is not a string"))),
        None => Err(Error::malformed(WHAT, format!("no {field}"))),
    }
}

fn boolean(map: &Map<String, Value>, field: &str) -> Result<bool> {
    match map.get(field) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Error::malformed(WHAT, format!("{field} is not a boolean"))),
        None => Err(Error::malformed(WHAT, format!("no {field}"))),
    }
}

fn check_type(map: &Map<String, Value>) -> Result<()> {
    let kind = string(map, "keyMaterialType")?;
    if kind != KEY_MATERIAL_TYPE {
        return Err(Error::malformed(
            WHAT,
            format!("keyMaterialType {kind:?} is not {KEY_MATERIAL_TYPE}"),
        ));
    }
    Ok(())
}

impl KeyMetadata {
    /// Parses a column's or the footer's key metadata, as read from a file.
    ///
    /// # Errors
    /// [`Error::Malformed`] for anything but the fields of the spec, with
    /// their types; [`Error::LimitExceeded`] past
    /// [`MAX_KEY_METADATA_LEN`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let map = object(bytes)?;
        check_type(&map)?;
        if boolean(&map, "internalStorage")? {
            Ok(KeyMetadata::Internal(KeyMaterial::from_map(&map)?))
        } else {
            Ok(KeyMetadata::External {
                key_reference: string(&map, "keyReference")?,
            })
        }
    }

    /// The JSON written as a column's or the footer's key metadata.
    pub fn to_json(&self) -> String {
        match self {
            KeyMetadata::Internal(material) => material.json(true),
            KeyMetadata::External { key_reference } => {
                let mut map = Map::new();
                map.insert("keyMaterialType".into(), KEY_MATERIAL_TYPE.into());
                map.insert("internalStorage".into(), false.into());
                map.insert("keyReference".into(), key_reference.as_str().into());
                Value::Object(map).to_string()
            }
        }
    }
}

impl KeyMaterial {
    /// Parses key material stored in an external key-material file.
    ///
    /// # Errors
    /// As [`KeyMetadata::parse`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let map = object(bytes)?;
        check_type(&map)?;
        Self::from_map(&map)
    }

    fn from_map(map: &Map<String, Value>) -> Result<Self> {
        let is_footer_key = boolean(map, "isFooterKey")?;
        let kms_instance = if is_footer_key {
            Some((
                string(map, "kmsInstanceID")?,
                string(map, "kmsInstanceURL")?,
            ))
        } else {
            None
        };
        let wrapping = if boolean(map, "doubleWrapping")? {
            Wrapping::Double {
                kek_id: string(map, "keyEncryptionKeyID")?,
                wrapped_kek: string(map, "wrappedKEK")?,
            }
        } else {
            Wrapping::Single
        };
        Ok(Self {
            is_footer_key,
            kms_instance,
            master_key_id: string(map, "masterKeyID")?,
            wrapped_dek: string(map, "wrappedDEK")?,
            wrapping,
        })
    }

    /// The JSON of this key material as stored in an external key-material
    /// file (without `internalStorage`).
    pub fn to_json(&self) -> String {
        self.json(false)
    }

    fn json(&self, internal: bool) -> String {
        let mut map = Map::new();
        map.insert("keyMaterialType".into(), KEY_MATERIAL_TYPE.into());
        if internal {
            map.insert("internalStorage".into(), true.into());
        }
        map.insert("isFooterKey".into(), self.is_footer_key.into());
        if let Some((id, url)) = &self.kms_instance {
            map.insert("kmsInstanceID".into(), id.as_str().into());
            map.insert("kmsInstanceURL".into(), url.as_str().into());
        }
        map.insert("masterKeyID".into(), self.master_key_id.as_str().into());
        map.insert("wrappedDEK".into(), self.wrapped_dek.as_str().into());
        match &self.wrapping {
            Wrapping::Single => {
                map.insert("doubleWrapping".into(), false.into());
            }
            Wrapping::Double {
                kek_id,
                wrapped_kek,
            } => {
                map.insert("doubleWrapping".into(), true.into());
                map.insert("keyEncryptionKeyID".into(), kek_id.as_str().into());
                map.insert("wrappedKEK".into(), wrapped_kek.as_str().into());
            }
        }
        Value::Object(map).to_string()
    }
}

fn aes_gcm(key: &DataKey) -> Result<aead::LessSafeKey> {
    let algorithm = match key.len() {
        16 => &aead::AES_128_GCM,
        32 => &aead::AES_256_GCM,
        n => {
            return Err(Error::malformed(
                WHAT,
                format!("a {}-bit key-encryption key is not supported", n * 8),
            ))
        }
    };
    let unbound = aead::UnboundKey::new(algorithm, key.expose_secret())
        .map_err(|_| Error::malformed(WHAT, "bad key-encryption key length"))?;
    Ok(aead::LessSafeKey::new(unbound))
}

/// Wraps `key` under `kek` with AES-GCM (128 or 256 by the KEK's length),
/// `aad` as associated data: base64 (standard, padded) of
/// `nonce(12) ‖ ciphertext ‖ tag(16)`, the nonce random.
pub(crate) fn wrap_locally(key: &DataKey, kek: &DataKey, aad: &[u8]) -> Result<String> {
    let cipher = aes_gcm(kek)?;
    let mut nonce = [0u8; NONCE_LEN];
    crate::cipher::fill_random(&mut nonce)?;
    let mut out = Vec::with_capacity(NONCE_LEN + key.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(key.expose_secret());
    let tag = cipher
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| Error::misuse("AES-GCM refused to seal a key"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(B64.encode(out))
}

/// Unwraps what [`wrap_locally`] made.
///
/// # Errors
/// [`Error::Malformed`] for bad base64 or a wrap too short or of a length
/// no data key has; [`Error::Integrity`] if it does not authenticate under
/// `kek` and `aad`.
pub(crate) fn unwrap_locally(wrapped: &str, kek: &DataKey, aad: &[u8]) -> Result<DataKey> {
    let cipher = aes_gcm(kek)?;
    let mut bytes = zeroize::Zeroizing::new(decode_base64(wrapped, "wrappedDEK")?);
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(Error::malformed(WHAT, "wrappedDEK is too short"));
    }
    super::key::check_len(bytes.len() - NONCE_LEN - TAG_LEN)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[..NONCE_LEN]);
    let plain = cipher
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            &mut bytes[NONCE_LEN..],
        )
        .map_err(|_| Error::tampered("Parquet wrapped data key"))?;
    DataKey::from_slice(plain)
}

/// Decodes standard base64 (with padding) from a file's field.
pub(crate) fn decode_base64(text: &str, field: &'static str) -> Result<Vec<u8>> {
    B64.decode(text)
        .map_err(|e| Error::malformed(WHAT, format!("{field} is not base64: {e}")))
}

/// Encodes standard base64 (with padding).
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(wrapping: Wrapping, footer: bool) -> KeyMaterial {
        KeyMaterial {
            is_footer_key: footer,
            kms_instance: footer.then(|| ("DEFAULT".into(), "DEFAULT".into())),
            master_key_id: "alias/orders".into(),
            wrapped_dek: "d3JhcHBlZA==".into(),
            wrapping,
        }
    }

    #[test]
    fn key_material_round_trips_both_storages() {
        for footer in [false, true] {
            for wrapping in [
                Wrapping::Single,
                Wrapping::Double {
                    kek_id: "AAAAAAAAAAAAAAAAAAAAAA==".into(),
                    wrapped_kek: "a2Vr".into(),
                },
            ] {
                let m = material(wrapping, footer);
                let internal = KeyMetadata::Internal(m.clone());
                assert_eq!(
                    KeyMetadata::parse(internal.to_json().as_bytes()).unwrap(),
                    internal
                );
                assert_eq!(KeyMaterial::parse(m.to_json().as_bytes()).unwrap(), m);
                assert!(!m.to_json().contains("internalStorage"));
            }
        }
        let external = KeyMetadata::External {
            key_reference: "columnKey3".into(),
        };
        assert_eq!(
            KeyMetadata::parse(external.to_json().as_bytes()).unwrap(),
            external
        );
    }

    #[test]
    fn reads_the_fields_other_writers_write() {
        // Field order and spacing of another writer, footer key, double wrapping.
        let text = r#"{"keyMaterialType": "PKMT1", "internalStorage": true, "isFooterKey": true,
            "kmsInstanceID": "DEFAULT", "kmsInstanceURL": "DEFAULT", "masterKeyID": "k1",
            "wrappedDEK": "abc=", "doubleWrapping": true,
            "keyEncryptionKeyID": "id==", "wrappedKEK": "kek"}"#;
        let KeyMetadata::Internal(m) = KeyMetadata::parse(text.as_bytes()).unwrap() else {
            panic!("internal")
        };
        assert!(m.is_footer_key);
        assert_eq!(m.master_key_id, "k1");
        assert_eq!(
            m.wrapping,
            Wrapping::Double {
                kek_id: "id==".into(),
                wrapped_kek: "kek".into()
            }
        );
    }

    #[test]
    fn hostile_metadata_is_malformed_never_a_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"null",
            b"[]",
            b"\xff\xfe",
            br#"{"keyMaterialType":"PKMT2","internalStorage":true}"#,
            br#"{"keyMaterialType":"PKMT1"}"#,
            br#"{"keyMaterialType":"PKMT1","internalStorage":"yes"}"#,
            br#"{"keyMaterialType":"PKMT1","internalStorage":false}"#,
            br#"{"keyMaterialType":"PKMT1","internalStorage":false,"keyReference":7}"#,
            br#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":true,"masterKeyID":"k","wrappedDEK":"x","doubleWrapping":false}"#,
            br#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":false,"masterKeyID":"k","wrappedDEK":"x","doubleWrapping":true}"#,
            br#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":false,"masterKeyID":null,"wrappedDEK":"x","doubleWrapping":false}"#,
        ];
        for case in cases {
            let err = KeyMetadata::parse(case).unwrap_err();
            assert!(matches!(err, Error::Malformed { .. }), "{err}");
        }
        let long = vec![b' '; MAX_KEY_METADATA_LEN + 1];
        assert!(matches!(
            KeyMetadata::parse(&long),
            Err(Error::LimitExceeded { .. })
        ));
    }

    #[test]
    fn local_wrap_round_trips_and_binds_key_and_aad() {
        for kek_len in [16, 32] {
            for dek_len in [16, 32] {
                let kek = DataKey::generate(kek_len).unwrap();
                let dek = DataKey::generate(dek_len).unwrap();
                let wrapped = wrap_locally(&dek, &kek, b"kek-id").unwrap();
                let raw = decode_base64(&wrapped, "w").unwrap();
                assert_eq!(raw.len(), 12 + dek_len + 16);
                assert_eq!(unwrap_locally(&wrapped, &kek, b"kek-id").unwrap(), dek);
                assert!(matches!(
                    unwrap_locally(&wrapped, &kek, b"kek-iD"),
                    Err(Error::Integrity { .. })
                ));
                let other = DataKey::generate(kek_len).unwrap();
                assert!(matches!(
                    unwrap_locally(&wrapped, &other, b"kek-id"),
                    Err(Error::Integrity { .. })
                ));
                let mut flipped = raw.clone();
                flipped[20] ^= 1;
                assert!(matches!(
                    unwrap_locally(&encode_base64(&flipped), &kek, b"kek-id"),
                    Err(Error::Integrity { .. })
                ));
            }
        }
    }

    #[test]
    fn local_wrap_refuses_bad_input() {
        let kek = DataKey::generate(16).unwrap();
        for bad in ["", "!!!", "AAAA", &encode_base64(&[0u8; 12 + 16 + 5])] {
            assert!(
                matches!(unwrap_locally(bad, &kek, b""), Err(Error::Malformed { .. })),
                "{bad}"
            );
        }
        let kek192 = DataKey::generate(24).unwrap();
        assert!(matches!(
            wrap_locally(&kek, &kek192, b""),
            Err(Error::Malformed { .. })
        ));
    }

    /// A known answer: AES-128-GCM (NIST SP 800-38D test case 3's key and
    /// nonce) over a 16-byte key with 16 bytes of associated data, checked
    /// against an independent implementation (Python's `cryptography`).
    #[test]
    fn local_unwrap_known_answer() {
        let kek = DataKey::from_slice(&hex_bytes("feffe9928665731c6d6a8f9467308308")).unwrap();
        let wrapped = "yv66vvrO263eyviI69NelqyWBuyKSlwTBk6Xf1f6c5mj+D33EUsfPlEpmLk=";
        let dek = unwrap_locally(wrapped, &kek, b"0123456789abcdef").unwrap();
        assert_eq!(dek.expose_secret(), b"parquet-data-key");
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
