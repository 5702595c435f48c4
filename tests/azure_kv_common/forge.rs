//! A forger against Azure Key Vault RSA roots: what someone can make who
//! reads a key's public half (from `get key`, or any copy of it) and writes
//! where a zone's manifest lives, but cannot use the key. Built from
//! docs/FORMAT.md alone ("Bound key", "Azure Key Vault wrapped key", "Zone
//! manifest"), with no help from cmek.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::signature::RSA_PSS_SHA256;
use azure_security_keyvault_keys::models::KeyClientGetKeyOptions;
use cmek::provider::AzureKeyVaultProvider;
use cmek::zone::{ZoneId, ZoneManifest};
use cmek::{EncryptionContext, KeyRef, SecretKey, WrappedKey};

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().try_into().unwrap()
}

fn len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A key version's public half, as `get key` gives it to anyone with `get`.
pub struct PublicHalf {
    /// `https://VAULT/keys/NAME`, canonical.
    pub versionless: String,
    pub version: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl PublicHalf {
    /// Reads the public half of `root` (a pinned version) from the vault.
    pub async fn of(p: &AzureKeyVaultProvider, root: &KeyRef) -> Self {
        let id = root.key_id();
        let (vault, rest) = id.split_once("/keys/").unwrap();
        let (name, version) = rest.split_once('/').expect("a pinned key version");
        let options = KeyClientGetKeyOptions {
            key_version: Some(version.to_owned()),
            ..Default::default()
        };
        let key = p
            .key_client(vault)
            .unwrap()
            .get_key(name, Some(options))
            .await
            .unwrap()
            .into_model()
            .unwrap()
            .key
            .unwrap();
        let strip = |b: Vec<u8>| b.into_iter().skip_while(|&x| x == 0).collect::<Vec<u8>>();
        Self {
            versionless: format!("{vault}/keys/{name}"),
            version: version.to_owned(),
            n: strip(key.n.expect("an RSA key")),
            e: strip(key.e.unwrap()),
        }
    }

    /// SubjectPublicKeyInfo DER of the key (RFC 5280, RFC 8017).
    fn spki(&self) -> Vec<u8> {
        fn len(n: usize) -> Vec<u8> {
            match n {
                0..=0x7f => vec![n as u8],
                0x80..=0xff => vec![0x81, n as u8],
                _ => vec![0x82, (n >> 8) as u8, n as u8],
            }
        }
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            out.extend(len(body.len()));
            out.extend_from_slice(body);
            out
        }
        fn int(bytes: &[u8]) -> Vec<u8> {
            let mut body = Vec::new();
            if bytes[0] & 0x80 != 0 {
                body.push(0);
            }
            body.extend_from_slice(bytes);
            tlv(0x02, &body)
        }
        let rsa_public_key = tlv(0x30, &[int(&self.n), int(&self.e)].concat());
        // rsaEncryption (1.2.840.113549.1.1.1), NULL parameters.
        let algorithm = tlv(
            0x30,
            &[
                &[
                    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
                ][..],
                &[0x05, 0x00],
            ]
            .concat(),
        );
        let bits = tlv(0x03, &[&[0u8][..], &rsa_public_key].concat());
        tlv(0x30, &[algorithm, bits].concat())
    }

    /// RSA-OAEP-256 of `plaintext` under the public half: Key Vault's
    /// `wrapKey`, done by anyone.
    fn oaep(&self, plaintext: &[u8]) -> Vec<u8> {
        let key = PublicEncryptingKey::from_der(&self.spki()).unwrap();
        let key = OaepPublicEncryptingKey::new(key).unwrap();
        let mut out = vec![0u8; key.ciphertext_size()];
        let n = key
            .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
            .unwrap()
            .len();
        out.truncate(n);
        out
    }

    /// The bytes of a wrapped key before its signature (FORMAT.md), with a
    /// bound key of `key`, `context` and a random salt, in format
    /// `version`.
    fn unsigned_wrap(&self, format: u8, key: &SecretKey, context: &EncryptionContext) -> Vec<u8> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).unwrap();
        let id = format!("{}#{}", self.versionless, hex::encode(salt));
        let mut aad = Vec::new();
        len_prefixed(&mut aad, id.as_bytes());
        aad.extend_from_slice(&context.canonical_bytes());
        let mut bound = key.expose_secret().to_vec();
        bound.extend_from_slice(&sha256(&[b"cmek bound key v1\0", &aad]));
        let mut out = vec![format, 0x01, self.version.len() as u8];
        out.extend_from_slice(self.version.as_bytes());
        out.extend_from_slice(&salt);
        out.extend_from_slice(&self.oaep(&bound));
        out
    }

    /// A wrap of `key` in format 1, as earlier releases wrote it: RSA-OAEP-256
    /// of the bound key under the public half, no signature.
    pub fn legacy_wrap(&self, key: &SecretKey, context: &EncryptionContext) -> WrappedKey {
        WrappedKey::from_bytes(self.unsigned_wrap(0x01, key, context))
    }

    /// A wrap of `key` in format 2, signed PS256 over the signed message by
    /// the forger's own RSA key of the same size (the best a forger can do).
    pub fn self_signed_wrap(&self, key: &SecretKey, context: &EncryptionContext) -> WrappedKey {
        let mut bytes = self.unsigned_wrap(0x02, key, context);
        let mut message = b"cmek azure wrap v2\0".to_vec();
        message.extend_from_slice(&bytes);
        len_prefixed(&mut message, self.versionless.as_bytes());
        message.extend_from_slice(&context.canonical_bytes());
        let size = match self.n.len() {
            256 => KeySize::Rsa2048,
            384 => KeySize::Rsa3072,
            512 => KeySize::Rsa4096,
            other => panic!("an RSA key of {other} bytes"),
        };
        let own = KeyPair::generate(size).unwrap();
        let mut signature = vec![0u8; own.public_modulus_len()];
        own.sign(
            &RSA_PSS_SHA256,
            &SystemRandom::new(),
            &message,
            &mut signature,
        )
        .unwrap();
        bytes.extend_from_slice(&signature);
        WrappedKey::from_bytes(bytes)
    }
}

/// The fields of a version 3 zone manifest (FORMAT.md), to write one.
pub struct Manifest {
    pub zone_id: ZoneId,
    pub body_zone_id: ZoneId,
    pub generation: u64,
    pub created: u64,
    pub updated: u64,
    pub name: String,
    pub region: String,
    pub root: KeyRef,
    pub root_alias: String,
    pub chunk_size: u32,
    pub active: u32,
    /// (version, created, wraps reserved, wrapped EZK), in version order.
    pub ezks: Vec<(u32, u64, u64, WrappedKey)>,
}

impl Manifest {
    /// The fields of a stored manifest.
    pub fn of(bytes: &[u8]) -> Self {
        let m = ZoneManifest::parse(bytes).unwrap();
        Self {
            zone_id: m.zone_id(),
            body_zone_id: m.body_zone_id(),
            generation: m.generation(),
            created: m.created_unix(),
            updated: m.updated_unix(),
            name: m.name().to_owned(),
            region: m.region().to_owned(),
            root: m.root().clone(),
            root_alias: m.root_alias().unwrap_or("").to_owned(),
            chunk_size: m.stream_params().chunk_size() as u32,
            active: m.active_version(),
            ezks: m
                .ezk_versions()
                .map(|(v, r)| (v, r.created_unix, r.wraps_reserved, r.wrapped.clone()))
                .collect(),
        }
    }

    /// The file, its tag made with `active_ezk` (the attacker's own EZK).
    pub fn seal(&self, active_ezk: &[u8; 32]) -> Vec<u8> {
        let str16 = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u16).to_be_bytes());
            out.extend_from_slice(b);
        };
        let mut out = b"CMEK-ZMF".to_vec();
        out.extend_from_slice(&3u16.to_be_bytes());
        out.extend_from_slice(self.zone_id.as_bytes());
        out.extend_from_slice(self.body_zone_id.as_bytes());
        for n in [self.generation, self.created, self.updated] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        for s in [
            self.name.as_str(),
            &self.region,
            self.root.provider(),
            self.root.key_id(),
            self.root.region(),
            &self.root_alias,
        ] {
            str16(&mut out, s.as_bytes());
        }
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.active.to_be_bytes());
        out.extend_from_slice(&(self.ezks.len() as u32).to_be_bytes());
        for (version, created, reserved, wrapped) in &self.ezks {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&created.to_be_bytes());
            out.extend_from_slice(&reserved.to_be_bytes());
            str16(&mut out, wrapped.as_bytes());
        }
        // HKDF-SHA256(ikm = EZK, salt = zone id, info = label ‖ SHA-256(body)),
        // 32 bytes: extract, then one block of expand.
        let prk = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.zone_id.as_bytes()),
            active_ezk,
        );
        let mut info = b"cmek.zone.manifest.v3".to_vec();
        info.extend_from_slice(&sha256(&[&out]));
        info.push(1);
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, prk.as_ref()),
            &info,
        );
        out.extend_from_slice(tag.as_ref());
        let sum = sha256(&[&out]);
        out.extend_from_slice(&sum);
        out
    }
}
