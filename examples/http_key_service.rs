//! A key provider written outside the crate: [`KeyProvider`] over a small
//! HTTP key service, built on the public API and `cmek::provider::kit` alone,
//! and checked by the conformance suite that every provider in the crate
//! passes.
//!
//! The example starts the key service itself, on loopback: a toy holding
//! symmetric AES-256 keys in memory, with an HTTP/1.1 API that encrypts and
//! decrypts short byte strings under a named key once the caller presents
//! its bearer token. It stands for any key service whose encrypt call takes
//! no associated data. The provider therefore binds the encryption context
//! itself with `kit::bind` and checks it with `kit::unbind`. The service's
//! keys are symmetric and never leave it, so only the service can make a
//! wrap the provider accepts: the security contract of `provider::kit`.
//!
//! Then it runs `cmek::testing::conformance` against the provider, prints
//! the report and fails unless every check passes. Last, it encrypts a
//! segment in a zone whose root key lives in the service.
//!
//! `cargo run --features testing --example http_key_service`
//!
//! The service's API (all under `/v1/keys/NAME`, with
//! `Authorization: Bearer TOKEN`; bodies are lowercase hex):
//!
//! | request | answer |
//! |---|---|
//! | `PUT /v1/keys/NAME` | 201 created, 409 the name is taken |
//! | `GET /v1/keys/NAME` | 200 `enabled` or `disabled`, 404 |
//! | `POST /v1/keys/NAME/enable`, `/disable` | 204, 404 |
//! | `POST /v1/keys/NAME/encrypt`, body: plaintext | 200 `nonce ‖ ciphertext ‖ tag`, 404, 423 disabled |
//! | `POST /v1/keys/NAME/decrypt`, body: that | 200 plaintext, 404, 423 disabled, 422 it does not decrypt |
//!
//! Any request without the token gets 401.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cmek::provider::kit::{self, check_kind, region_mismatch};
use cmek::provider::{KeyAdmin, NewKey, RegionAnswer};
use cmek::testing::conformance::{self, Fixture, Forgery};
use cmek::zone::{Keyring, MemoryManifestStore, ZoneSpec};
use cmek::{
    EncryptionContext, Error, KeyProvider, KeyRef, KeyState, Result, SecretKey, WrappedKey,
};
use zeroize::Zeroizing;

/// The provider kind, the first part of its keys' references.
const KIND: &str = "http-key-service";
/// The first byte of every wrapped key this provider makes: the layout
/// `0x01 ‖ the service's nonce ‖ ciphertext ‖ tag` of a bound key.
const WRAP_FORMAT: u8 = 1;
/// The largest answer the provider reads; anything longer is malformed.
const MAX_RESPONSE: usize = 64 * 1024;
/// How long a request may take before the service counts as unreachable.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Why nobody but the service can make a wrap this provider accepts.
const NO_PUBLIC_MATERIAL: &str = "no public material: a key of the HTTP key service is a \
     symmetric AES-256 key that never leaves the service, so every wrap is made by the service";

/// The provider: the service's address, the bearer token, and the region
/// the service is in (it has no replicas).
struct HttpKeyProvider {
    addr: SocketAddr,
    token: Zeroizing<String>,
    region: String,
}

impl fmt::Debug for HttpKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        f.debug_struct("HttpKeyProvider")
            .field("addr", &self.addr)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// An HTTP answer: the status and the body.
struct Answer {
    status: u16,
    body: Zeroizing<Vec<u8>>,
}

impl HttpKeyProvider {
    fn new(addr: SocketAddr, token: &str, region: &str) -> Self {
        Self {
            addr,
            token: Zeroizing::new(token.to_owned()),
            region: region.to_owned(),
        }
    }

    /// The path of `root`'s resource, after checking its kind and name.
    fn key_path(&self, root: &KeyRef, action: &str) -> Result<String> {
        check_kind(KIND, root)?;
        let id = root.key_id();
        let ok = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "key {root}: a key name is 1 to 128 letters, digits, '.', '_' or '-'"
            )));
        }
        Ok(format!("/v1/keys/{id}{action}"))
    }

    /// One request, on a blocking thread. A failure to connect, send or
    /// read is `ProviderUnreachable`; an answer that is not HTTP is
    /// `Malformed`.
    async fn request(&self, method: &'static str, path: String, body: Vec<u8>) -> Result<Answer> {
        let (addr, token) = (self.addr, self.token.clone());
        tokio::task::spawn_blocking(move || exchange(addr, &token, method, &path, &body))
            .await
            .map_err(|e| Error::WorkerPanicked {
                what: format!("an HTTP request to the key service: {e}"),
            })?
    }

    /// The error for a refusal of `operation` on `root`.
    fn refusal(root: &KeyRef, operation: &'static str, answer: &Answer) -> Error {
        let key = root.to_string();
        match answer.status {
            401 | 403 => Error::AccessDenied { key, operation },
            404 => Error::KeyUnavailable {
                key,
                state: KeyState::NotFound,
            },
            423 => Error::KeyUnavailable {
                key,
                state: KeyState::Disabled,
            },
            422 => Error::tampered("wrapped key"),
            429 => Error::Throttled {
                provider: KIND.into(),
            },
            500..=599 => Error::unreachable(KIND, format!("{operation}: HTTP {}", answer.status)),
            status => Error::rejected(
                KIND,
                status.to_string(),
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)]).into_owned(),
            ),
        }
    }

    /// The hex body of a 200 answer, decoded.
    fn decoded(answer: &Answer, what: &'static str) -> Result<Zeroizing<Vec<u8>>> {
        hex::decode(&answer.body[..])
            .map(Zeroizing::new)
            .map_err(|e| Error::Malformed {
                what,
                reason: format!("not hex: {e}"),
            })
    }

    async fn set_enabled(&self, key: &KeyRef, enabled: bool) -> Result<()> {
        let action = if enabled { "/enable" } else { "/disable" };
        let operation = if enabled { "enable" } else { "disable" };
        let answer = self
            .request("POST", self.key_path(key, action)?, Vec::new())
            .await?;
        match answer.status {
            204 => Ok(()),
            _ => Err(Self::refusal(key, operation, &answer)),
        }
    }
}

#[async_trait]
impl KeyProvider for HttpKeyProvider {
    fn kind(&self) -> &str {
        KIND
    }

    fn key_ref(&self, key_id: &str) -> KeyRef {
        KeyRef::new(KIND, key_id, &self.region)
    }

    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey> {
        let path = self.key_path(root, "/encrypt")?;
        // The service's encrypt call takes no associated data: the context
        // and the key's name go into the plaintext, bound by the kit.
        let bound = kit::bind(key, root.key_id(), context);
        let body = Zeroizing::new(hex::encode(bound.as_bytes()).into_bytes());
        let answer = self.request("POST", path, body.to_vec()).await?;
        if answer.status != 200 {
            return Err(Self::refusal(root, "wrap", &answer));
        }
        let sealed = Self::decoded(&answer, "key service encrypt answer")?;
        let mut wrapped = Vec::with_capacity(1 + sealed.len());
        wrapped.push(WRAP_FORMAT);
        wrapped.extend_from_slice(&sealed);
        Ok(WrappedKey::from_bytes(wrapped))
    }

    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        let path = self.key_path(root, "/decrypt")?;
        let sealed = match wrapped.as_bytes().split_first() {
            Some((&WRAP_FORMAT, sealed)) if !sealed.is_empty() => sealed,
            Some((&version, _)) if version != WRAP_FORMAT => {
                return Err(Error::Malformed {
                    what: "wrapped key",
                    reason: format!("unknown format version {version}"),
                })
            }
            _ => {
                return Err(Error::Malformed {
                    what: "wrapped key",
                    reason: "too short".into(),
                })
            }
        };
        let answer = self
            .request("POST", path, hex::encode(sealed).into_bytes())
            .await?;
        if answer.status != 200 {
            return Err(Self::refusal(root, "unwrap", &answer));
        }
        let bound = Self::decoded(&answer, "key service decrypt answer")?;
        // The key comes back only if it was bound to this key and context.
        kit::unbind(&bound, root.key_id(), context)
    }

    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
        let path = self.key_path(root, "")?;
        let answer = match self.request("GET", path, Vec::new()).await {
            Ok(answer) => answer,
            Err(Error::ProviderUnreachable { .. }) => return Ok(KeyState::Unreachable),
            Err(e) => return Err(e),
        };
        match (answer.status, &answer.body[..]) {
            (200, b"enabled") => Ok(KeyState::Enabled),
            (200, b"disabled") => Ok(KeyState::Disabled),
            (200, _) => Err(Error::Malformed {
                what: "key service describe answer",
                reason: "neither enabled nor disabled".into(),
            }),
            (404, _) => Ok(KeyState::NotFound),
            _ => Err(Self::refusal(root, "describe", &answer)),
        }
    }

    fn key_in_region(&self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        check_kind(KIND, root)?;
        if root.region() == region {
            Ok(root.clone())
        } else {
            Err(region_mismatch(
                root,
                region,
                "the key service serves one region: use a key of a service in the region \
                 the key is used from",
            ))
        }
    }

    fn admin(&self) -> Option<&dyn KeyAdmin> {
        Some(self)
    }
}

#[async_trait]
impl KeyAdmin for HttpKeyProvider {
    async fn create_key(&self, new: &NewKey) -> Result<KeyRef> {
        if new.is_multi_region() {
            return Err(Error::InvalidArgument(
                "the key service has no multi-region keys".into(),
            ));
        }
        let name = match new.name() {
            Some(name) => name.to_owned(),
            None => {
                let mut r = [0u8; 8];
                kit::fill_random(&mut r)?;
                format!("key-{}", hex::encode(r))
            }
        };
        let key = self.key_ref(&name);
        let answer = self
            .request("PUT", self.key_path(&key, "")?, Vec::new())
            .await?;
        match answer.status {
            201 => Ok(key),
            409 => Err(Error::InvalidArgument(format!("key {key} already exists"))),
            _ => Err(Self::refusal(&key, "create", &answer)),
        }
    }

    async fn enable_key(&self, key: &KeyRef) -> Result<()> {
        self.set_enabled(key, true).await
    }

    async fn disable_key(&self, key: &KeyRef) -> Result<()> {
        self.set_enabled(key, false).await
    }
}

/// Sends one request and reads the whole answer (the service closes the
/// connection after it).
fn exchange(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Answer> {
    let unreachable = |e: std::io::Error| {
        Error::unreachable(KIND, format!("{method} {path} at {addr}")).with_source(e)
    };
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    let mut request = Zeroizing::new(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes(),
    );
    request.extend_from_slice(body);
    stream.write_all(&request).map_err(unreachable)?;
    let mut raw = Zeroizing::new(Vec::new());
    stream
        .take(MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(unreachable)?;
    let malformed = |reason: &str| Error::Malformed {
        what: "key service answer",
        reason: reason.to_owned(),
    };
    if raw.len() > MAX_RESPONSE {
        return Err(malformed("longer than 64 KiB"));
    }
    let end = find(&raw, b"\r\n\r\n").ok_or_else(|| malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| malformed("headers not UTF-8"))?;
    let status = head
        .split("\r\n")
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| malformed("no HTTP/1.1 status line"))?;
    Ok(Answer {
        status,
        body: Zeroizing::new(raw[end + 4..].to_vec()),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The key service: a toy that stands for a remote one. It shares nothing
/// with the provider but the socket.
mod service {
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
    use ring::rand::{SecureRandom, SystemRandom};
    use zeroize::Zeroizing;

    /// The longest request the service reads.
    const MAX_REQUEST: usize = 16 * 1024;

    struct Key {
        material: Zeroizing<[u8; 32]>,
        enabled: bool,
    }

    struct State {
        token: String,
        keys: Mutex<HashMap<String, Key>>,
        random: SystemRandom,
    }

    /// Starts the service on a loopback port the OS picks; it runs until the
    /// process exits.
    pub fn start(token: &str) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            token: token.to_owned(),
            keys: Mutex::new(HashMap::new()),
            random: SystemRandom::new(),
        });
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = state.clone();
                std::thread::spawn(move || serve(&state, stream));
            }
        });
        Ok(addr)
    }

    fn serve(state: &State, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let (status, body) = match read_request(&mut stream) {
            Some((head, body)) => answer(state, &head, &body),
            None => (400, Vec::new()),
        };
        let reason = match status {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            401 => "Unauthorized",
            404 => "Not Found",
            409 => "Conflict",
            422 => "Unprocessable Content",
            423 => "Locked",
            _ => "Bad Request",
        };
        let mut out = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        let _ = stream.write_all(&out);
    }

    /// The request's head and body, or `None` for anything that is not a
    /// well-formed request within the limits.
    fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if raw.len() > MAX_REQUEST {
                return None;
            }
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8(raw[..end].to_vec()).ok()?;
        let length: usize = head
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .map_or(Some(0), |(_, value)| value.trim().parse().ok())?;
        if length > MAX_REQUEST {
            return None;
        }
        let mut body = raw[end + 4..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&buf[..n]);
        }
        body.truncate(length);
        Some((head, body))
    }

    fn answer(state: &State, head: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let (method, path) = (
            request_line.next().unwrap_or(""),
            request_line.next().unwrap_or(""),
        );
        let authorized = lines
            .filter_map(|line| line.split_once(':'))
            .any(|(name, value)| {
                name.eq_ignore_ascii_case("authorization")
                    && value.trim() == format!("Bearer {}", state.token)
            });
        if !authorized {
            return (401, Vec::new());
        }
        let Some(rest) = path.strip_prefix("/v1/keys/") else {
            return (404, Vec::new());
        };
        let (name, action) = rest.split_once('/').unwrap_or((rest, ""));
        let mut keys = state.keys.lock().unwrap_or_else(|e| e.into_inner());
        if (method, action) == ("PUT", "") {
            if keys.contains_key(name) {
                return (409, Vec::new());
            }
            let mut material = Zeroizing::new([0u8; 32]);
            if state.random.fill(&mut material[..]).is_err() {
                return (500, Vec::new());
            }
            keys.insert(
                name.to_owned(),
                Key {
                    material,
                    enabled: true,
                },
            );
            return (201, Vec::new());
        }
        let Some(key) = keys.get_mut(name) else {
            return (404, Vec::new());
        };
        match (method, action) {
            ("GET", "") => {
                let state = if key.enabled { "enabled" } else { "disabled" };
                (200, state.as_bytes().to_vec())
            }
            ("POST", "enable") | ("POST", "disable") => {
                key.enabled = action == "enable";
                (204, Vec::new())
            }
            ("POST", "encrypt") | ("POST", "decrypt") if !key.enabled => (423, Vec::new()),
            ("POST", "encrypt") => match hex::decode(body) {
                Ok(plain) => seal(state, key, name, Zeroizing::new(plain)),
                Err(_) => (400, Vec::new()),
            },
            ("POST", "decrypt") => match hex::decode(body) {
                Ok(sealed) => open(key, name, sealed),
                Err(_) => (400, Vec::new()),
            },
            _ => (400, Vec::new()),
        }
    }

    /// AES-256-GCM under the key, a random nonce, the key's name as
    /// associated data: `nonce ‖ ciphertext ‖ tag`, in hex.
    fn seal(state: &State, key: &Key, name: &str, mut plain: Zeroizing<Vec<u8>>) -> (u16, Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        if state.random.fill(&mut nonce).is_err() {
            return (500, Vec::new());
        }
        let Ok(unbound) = UnboundKey::new(&AES_256_GCM, &key.material[..]) else {
            return (500, Vec::new());
        };
        let sealing = LessSafeKey::new(unbound);
        let nonce_value = Nonce::assume_unique_for_key(nonce);
        if sealing
            .seal_in_place_append_tag(nonce_value, Aad::from(name.as_bytes()), &mut *plain)
            .is_err()
        {
            return (500, Vec::new());
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&plain);
        (200, hex::encode(out).into_bytes())
    }

    /// The inverse of `seal`; 422 for anything that does not decrypt.
    fn open(key: &Key, name: &str, mut sealed: Vec<u8>) -> (u16, Vec<u8>) {
        if sealed.len() < NONCE_LEN {
            return (422, Vec::new());
        }
        let mut ciphertext = Zeroizing::new(sealed.split_off(NONCE_LEN));
        let Ok(nonce) = Nonce::try_assume_unique_for_key(&sealed) else {
            return (422, Vec::new());
        };
        let Ok(unbound) = UnboundKey::new(&AES_256_GCM, &key.material[..]) else {
            return (500, Vec::new());
        };
        match LessSafeKey::new(unbound).open_in_place(
            nonce,
            Aad::from(name.as_bytes()),
            &mut ciphertext[..],
        ) {
            Ok(plain) => (200, hex::encode(plain).into_bytes()),
            Err(_) => (422, Vec::new()),
        }
    }
}

/// The conformance fixture: fresh keys through the provider's own admin.
struct Service {
    provider: HttpKeyProvider,
    next: AtomicU32,
}

#[async_trait]
impl Fixture for Service {
    fn provider(&self) -> &dyn KeyProvider {
        &self.provider
    }

    async fn enabled_key(&self) -> Result<KeyRef> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.provider
            .create_key(&NewKey::named(format!("conformance-{n}")))
            .await
    }

    fn missing_key(&self) -> KeyRef {
        self.provider.key_ref("never-created")
    }

    async fn forge(
        &self,
        _root: &KeyRef,
        _key: &SecretKey,
        _context: &EncryptionContext,
    ) -> Result<Forgery> {
        Ok(Forgery::NoPublicMaterial(NO_PUBLIC_MATERIAL))
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut token = [0u8; 16];
    kit::fill_random(&mut token)?;
    let token = hex::encode(token);
    let addr = service::start(&token)?;
    println!("key service on http://{addr}");

    // The provider passes the suite every provider passes.
    let fixture = Service {
        provider: HttpKeyProvider::new(addr, &token, "lab-1"),
        next: AtomicU32::new(0),
    };
    let report = conformance::run(&fixture).await;
    print!("{report}");
    report.assert_conforms();

    // Without the token the service refuses, and the provider says so with
    // the error an engine acts on (tell the key's owner, do not retry).
    let stranger = HttpKeyProvider::new(addr, "not-the-token", "lab-1");
    let probe = fixture.provider.key_ref("conformance-0");
    match stranger.describe_key(&probe).await {
        Err(Error::AccessDenied { .. }) => println!("a wrong token: access denied"),
        other => return Err(format!("a wrong token was answered {other:?}").into()),
    }
    // A key is used only from its own region.
    let answer = fixture.provider.serves_region(&probe, "lab-2").await?;
    assert!(matches!(answer, RegionAnswer::NotServed(_)), "{answer:?}");

    // A zone whose root key lives in the service.
    let provider: Arc<dyn KeyProvider> = Arc::new(fixture.provider);
    let root = provider
        .admin()
        .expect("the provider administers its keys")
        .create_key(&NewKey::named("orders-root"))
        .await?;
    let zone = Keyring::new(provider.clone())
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("orders", "lab-1", root.clone()),
        )
        .await?;
    let segment = zone.encrypt_segment("orders/1", b"rows under a key in the service")?;
    let plain = zone.decrypt_segment("orders/1", &segment)?;
    assert_eq!(&plain[..], b"rows under a key in the service");
    println!(
        "zone {} under {root}: a segment of {} bytes written and read back",
        zone.id(),
        segment.len()
    );
    Ok(())
}
