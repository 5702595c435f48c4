//! One KMIP request over mutual TLS: connect, handshake (the client's
//! certificate against the server's CA), send the request, read exactly
//! one response message, close.
//!
//! A connection per call: cmek calls the key server when a zone opens, is
//! rotated or re-checked, rarely enough that a pool would only add state
//! (and a stale connection to a server that restarted). TLS is rustls with
//! the aws-lc-rs crypto provider, the stack the AWS SDK already brings.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

use super::ttlv::{self, Item, HEADER_LEN};
use super::KMIP_PROVIDER;
use crate::{Error, Result};

/// Where and how to reach the key server.
#[derive(Clone)]
pub(crate) struct Transport {
    endpoint: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    connect_timeout: Duration,
    call_timeout: Duration,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("endpoint", &self.endpoint)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| Error::io(path, e))
}

fn bad_file(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{}: {why}", path.display()))
}

/// The certificates of a PEM file, at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad_file(path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(bad_file(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The host part of `host:port` or `[v6]:port`.
pub(crate) fn host_of(endpoint: &str) -> Result<&str> {
    let bad = || {
        Error::InvalidArgument(format!(
            "KMIP endpoint {endpoint:?}: expected HOST:PORT (e.g. kms.example.net:5696)"
        ))
    };
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    Ok(host)
}

impl Transport {
    /// A transport to `endpoint` (`host:port`), verifying the server's
    /// certificate against the CA certificates in `ca_file` under
    /// `server_name` (else the endpoint's host), and presenting the
    /// certificate chain in `cert_file` with the private key in `key_file`
    /// (PEM; PKCS#8, PKCS#1 or SEC1).
    pub(crate) fn new(
        endpoint: &str,
        server_name: Option<&str>,
        ca_file: &Path,
        cert_file: &Path,
        key_file: &Path,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<Self> {
        let name = server_name.unwrap_or(host_of(endpoint)?);
        let server_name = ServerName::try_from(name.to_owned()).map_err(|_| {
            Error::InvalidArgument(format!("KMIP server name {name:?} is not a DNS name or IP"))
        })?;
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca_file)? {
            roots
                .add(cert)
                .map_err(|e| bad_file(ca_file, format!("unusable CA certificate ({e})")))?;
        }
        let chain = certificates(cert_file)?;
        let key_pem = read_file(key_file)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| bad_file(key_file, format!("no PEM private key ({e})")))?;
        let crypto = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(crypto)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InvalidArgument(format!("TLS configuration: {e}")))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| {
                bad_file(
                    key_file,
                    format!("the key does not fit the client certificate or is unusable ({e})"),
                )
            })?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
            connect_timeout,
            call_timeout,
        })
    }

    /// Sends `request` and returns the response message, decoded.
    ///
    /// # Errors
    /// [`Error::ProviderUnreachable`] for a server that cannot be reached
    /// or does not answer in time; [`Error::ProviderRejected`] for a TLS
    /// handshake that fails (a certificate either side refuses);
    /// [`Error::Malformed`] for a response that is not one TTLV message.
    pub(crate) async fn call(&self, request: &Item, operation: &'static str) -> Result<Item> {
        let bytes = request.encode()?;
        match tokio::time::timeout(self.call_timeout, self.exchange(&bytes, operation)).await {
            Ok(result) => result,
            Err(_) => Err(Error::unreachable(
                KMIP_PROVIDER,
                format!("{operation} timed out after {:?}", self.call_timeout),
            )),
        }
    }

    async fn exchange(&self, request: &[u8], operation: &'static str) -> Result<Item> {
        let unreachable = |what: &str, e: std::io::Error| {
            Error::unreachable(
                KMIP_PROVIDER,
                format!("{operation}: {what} {}", self.endpoint),
            )
            .with_source(e)
        };
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.endpoint))
            .await
            .map_err(|_| {
                Error::unreachable(
                    KMIP_PROVIDER,
                    format!("{operation}: connecting to {} timed out", self.endpoint),
                )
            })?
            .map_err(|e| unreachable("cannot connect to", e))?;
        let _ = tcp.set_nodelay(true);
        let mut tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| handshake_error(operation, e, &self.endpoint))?;
        tls.write_all(request)
            .await
            .map_err(|e| io_error(operation, e, &self.endpoint))?;
        tls.flush()
            .await
            .map_err(|e| io_error(operation, e, &self.endpoint))?;
        let mut header = [0u8; HEADER_LEN];
        tls.read_exact(&mut header)
            .await
            .map_err(|e| io_error(operation, e, &self.endpoint))?;
        let len = ttlv::message_len(&header)?;
        let mut message = Zeroizing::new(vec![0u8; len]);
        message[..HEADER_LEN].copy_from_slice(&header);
        tls.read_exact(&mut message[HEADER_LEN..])
            .await
            .map_err(|e| io_error(operation, e, &self.endpoint))?;
        // The answer is complete; a server that drops the connection
        // before the close is no failure of this call.
        let _ = tls.shutdown().await;
        ttlv::decode(&message)
    }
}

fn io_error(operation: &str, e: std::io::Error, endpoint: &str) -> Error {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return Error::rejected(KMIP_PROVIDER, "TLS", format!("{operation}: {tls}"));
    }
    Error::unreachable(
        KMIP_PROVIDER,
        format!("{operation}: connection to {endpoint} failed"),
    )
    .with_source(e)
}

/// A failed handshake is a certificate or protocol refusal when rustls
/// says so (not worth retrying); otherwise the connection failed.
fn handshake_error(operation: &str, e: std::io::Error, endpoint: &str) -> Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Error::rejected(
            KMIP_PROVIDER,
            "TLS handshake",
            format!("{operation}: {tls} (check CMEK_KMIP_CA, CMEK_KMIP_CERT and CMEK_KMIP_KEY)"),
        ),
        None => Error::unreachable(
            KMIP_PROVIDER,
            format!("{operation}: TLS handshake with {endpoint} failed"),
        )
        .with_source(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_a_host_and_port() {
        assert_eq!(host_of("kms.example.net:5696").unwrap(), "kms.example.net");
        assert_eq!(host_of("127.0.0.1:5696").unwrap(), "127.0.0.1");
        assert_eq!(host_of("[::1]:5696").unwrap(), "::1");
        for bad in ["kms.example.net", ":5696", "host:port", "host:70000", ""] {
            assert!(
                matches!(host_of(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn unusable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, b"not pem").unwrap();
        let missing = dir.path().join("missing.pem");
        let d = Duration::from_secs(1);
        let err = Transport::new("h:1", None, &empty, &empty, &empty, d, d).unwrap_err();
        assert!(err.to_string().contains("empty.pem"), "{err}");
        let err = Transport::new("h:1", None, &missing, &empty, &empty, d, d).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
