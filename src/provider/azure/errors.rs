//! Key Vault failures mapped onto [`Error`].
//!
//! The service answers errors as `{"error": {"code", "message",
//! "innererror": {"code"}}}` with an HTTP status; the status decides the
//! variant, and the codes refine it (a disabled key is a 403 whose inner
//! code is `KeyDisabled`).

use azure_core::error::ErrorKind;

use super::AZURE_KV_PROVIDER;
use crate::provider::{KeyRef, KeyState};
use crate::Error;

/// The codes and message of an error body.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ErrorBody {
    pub(super) code: Option<String>,
    pub(super) inner: Option<String>,
    pub(super) message: String,
}

impl ErrorBody {
    /// Parses a Key Vault error body; anything else gives an empty one.
    pub(super) fn parse(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Self::default();
        };
        let error = &value["error"];
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        let inner = error
            .get("innererror")
            .or_else(|| error.get("innerError"))
            .and_then(|i| text(&i["code"]));
        Self {
            code: text(&error["code"]),
            inner,
            message: text(&error["message"]).unwrap_or_default(),
        }
    }
}

/// Maps an SDK failure of `operation` on `root` onto the crate's errors,
/// keeping the SDK's error as the source.
pub(super) fn map_error(err: azure_core::Error, root: &KeyRef, operation: &'static str) -> Error {
    let key = root.to_string();
    let unreachable = |reason: String| Error::unreachable(AZURE_KV_PROVIDER, reason);
    let mapped = match err.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let body = raw_response
                .as_ref()
                .map(|r| ErrorBody::parse(r.body().as_ref()))
                .unwrap_or_default();
            let code = body
                .code
                .clone()
                .or_else(|| error_code.clone())
                .unwrap_or_else(|| "Unknown".into());
            from_status(u16::from(*status), &code, &body, key, operation)
        }
        ErrorKind::Connection => unreachable(format!("{operation} could not connect")),
        ErrorKind::Io => unreachable(format!("{operation} failed in transit")),
        ErrorKind::Credential => Error::AccessDenied { key, operation },
        ErrorKind::DataConversion => {
            Error::malformed("Key Vault response", format!("{operation}: not understood"))
        }
        _ => Error::rejected(AZURE_KV_PROVIDER, "Other", format!("{operation} failed")),
    };
    mapped.with_source(err)
}

fn from_status(
    status: u16,
    code: &str,
    body: &ErrorBody,
    key: String,
    operation: &'static str,
) -> Error {
    let message = body.message.to_ascii_lowercase();
    match status {
        401 => Error::AccessDenied { key, operation },
        403 if body.inner.as_deref() == Some("KeyDisabled") || message.contains("disabled key") => {
            Error::KeyUnavailable {
                key,
                state: KeyState::Disabled,
            }
        }
        403 if message.contains("expired") || message.contains("not yet valid") => {
            Error::KeyUnavailable {
                key,
                state: KeyState::Unavailable,
            }
        }
        403 => Error::AccessDenied { key, operation },
        404 => Error::KeyUnavailable {
            key,
            state: KeyState::NotFound,
        },
        // The service could not unwrap what it was given: modified, or
        // wrapped by another key.
        400 if operation == "unwrap" => Error::tampered("Key Vault wrapped key"),
        408 => Error::unreachable(AZURE_KV_PROVIDER, format!("{operation} timed out")),
        429 => Error::Throttled {
            provider: AZURE_KV_PROVIDER.into(),
        },
        500..=599 => Error::unreachable(AZURE_KV_PROVIDER, format!("{operation}: {status} {code}")),
        _ => Error::rejected(AZURE_KV_PROVIDER, code, body.message.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> ErrorBody {
        ErrorBody::parse(json.as_bytes())
    }

    #[test]
    fn bodies_parse_in_both_spellings() {
        let b = body(
            r#"{"error":{"code":"Forbidden","message":"Operation unwrapKey is not allowed on a disabled key.","innererror":{"code":"KeyDisabled"}}}"#,
        );
        assert_eq!(b.code.as_deref(), Some("Forbidden"));
        assert_eq!(b.inner.as_deref(), Some("KeyDisabled"));
        let b = body(r#"{"error":{"code":"Forbidden","innerError":{"code":"ForbiddenByRbac"}}}"#);
        assert_eq!(b.inner.as_deref(), Some("ForbiddenByRbac"));
        assert_eq!(body("not json"), ErrorBody::default());
        assert_eq!(body(r#"{"error":7}"#), ErrorBody::default());
    }

    #[test]
    fn statuses_and_codes_map_to_variants() {
        let k = || "azure-kv:r:k".to_owned();
        let disabled =
            body(r#"{"error":{"code":"Forbidden","innererror":{"code":"KeyDisabled"}}}"#);
        assert!(matches!(
            from_status(403, "Forbidden", &disabled, k(), "unwrap"),
            Error::KeyUnavailable {
                state: KeyState::Disabled,
                ..
            }
        ));
        let expired = body(
            r#"{"error":{"code":"Forbidden","message":"Operation wrapKey is not allowed on an expired key."}}"#,
        );
        assert!(matches!(
            from_status(403, "Forbidden", &expired, k(), "wrap"),
            Error::KeyUnavailable {
                state: KeyState::Unavailable,
                ..
            }
        ));
        let policy =
            body(r#"{"error":{"code":"Forbidden","innererror":{"code":"ForbiddenByPolicy"}}}"#);
        assert!(matches!(
            from_status(403, "Forbidden", &policy, k(), "wrap"),
            Error::AccessDenied {
                operation: "wrap",
                ..
            }
        ));
        let none = ErrorBody::default();
        assert!(matches!(
            from_status(401, "Unauthorized", &none, k(), "get"),
            Error::AccessDenied { .. }
        ));
        assert!(matches!(
            from_status(404, "KeyNotFound", &none, k(), "get"),
            Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            }
        ));
        assert!(matches!(
            from_status(400, "BadParameter", &none, k(), "unwrap"),
            Error::Integrity { .. }
        ));
        assert!(matches!(
            from_status(400, "BadParameter", &none, k(), "wrap"),
            Error::ProviderRejected { .. }
        ));
        assert!(matches!(
            from_status(429, "Throttled", &none, k(), "wrap"),
            Error::Throttled { .. }
        ));
        for s in [500, 503] {
            assert!(from_status(s, "x", &none, k(), "wrap").is_transient());
        }
    }
}
