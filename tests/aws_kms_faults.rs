//! Retry behaviour of the AWS KMS provider under throttling and server
//! errors, which the KMS test server cannot produce: a scripted HTTP server
//! on loopback answers each request with the next canned response.
#![cfg(feature = "aws-kms")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmek::provider::{AwsKmsOptions, AwsKmsProvider};
use cmek::{Error, KeyProvider, KeyState};

const THROTTLED: (u16, &str) = (
    400,
    r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
);
const UNAVAILABLE: (u16, &str) = (
    503,
    r#"{"__type":"KMSInternalException","message":"try again"}"#,
);
const DENIED: (u16, &str) = (
    400,
    r#"{"__type":"AccessDeniedException","message":"not allowed"}"#,
);
const ENABLED: (u16, &str) = (
    200,
    r#"{"KeyMetadata":{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","KeyState":"Enabled"}}"#,
);

/// Serves `script` in order, one response per connection, then stops.
/// Returns the endpoint and a counter of requests served.
fn scripted_server(script: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    std::thread::spawn(move || {
        for (status, body) in script {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut request_body = vec![0u8; length];
            let _ = reader.read_exact(&mut request_body);
            let mut stream = reader.into_inner();
            // Counted before answering: the client may read the answer,
            // and the test the counter, before this thread runs again.
            counter.fetch_add(1, Ordering::SeqCst);
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (url, served)
}

fn provider(url: &str, max_attempts: u32, deadline: Duration) -> AwsKmsProvider {
    let options = AwsKmsOptions {
        max_attempts,
        deadline,
        initial_backoff: Duration::from_millis(20),
        ..AwsKmsOptions::default()
    };
    common::provider(url, "us-east-1", &options)
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_then_succeed() {
    let (url, served) = scripted_server(vec![THROTTLED, UNAVAILABLE, THROTTLED, ENABLED]);
    let p = provider(&url, 5, Duration::from_secs(10));
    let key = p.key_ref("1234abcd-12ab-34cd-56ef-1234567890ab");
    assert_eq!(p.describe_key(&key).await.unwrap(), KeyState::Enabled);
    assert_eq!(served.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit_with_a_typed_error() {
    let (url, served) = scripted_server(vec![THROTTLED; 3]);
    let p = provider(&url, 3, Duration::from_secs(10));
    let key = p.key_ref("1234abcd-12ab-34cd-56ef-1234567890ab");
    let err = p
        .wrap_key(
            &key,
            &cmek::SecretKey::generate().unwrap(),
            &Default::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Throttled { .. }), "{err}");
    assert_eq!(served.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn access_denied_is_not_retried() {
    let (url, served) = scripted_server(vec![DENIED, ENABLED]);
    let p = provider(&url, 5, Duration::from_secs(10));
    let key = p.key_ref("1234abcd-12ab-34cd-56ef-1234567890ab");
    let err = p.describe_key(&key).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::AccessDenied {
                operation: "describe",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_deadline_bounds_a_call_that_keeps_failing() {
    let (url, _served) = scripted_server(vec![UNAVAILABLE; 1000]);
    let p = provider(&url, 1000, Duration::from_millis(800));
    let key = p.key_ref("1234abcd-12ab-34cd-56ef-1234567890ab");
    let start = Instant::now();
    let err = p
        .wrap_key(
            &key,
            &cmek::SecretKey::generate().unwrap(),
            &Default::default(),
        )
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}
