//! Quickstart on the embedded default: a local key file as the root of trust.
//!
//! Creates a key file with one root key, wraps a fresh encryption-zone key
//! (EZK) under it with an encryption context, unwraps it again, and shows the
//! context binding and key-state gating at work.
//!
//! `cargo run --example quickstart [KEY_FILE]` — without an argument the key
//! file lives in a temporary directory that is removed at exit.

use cmek::cipher::KeyWrapper;
use cmek::provider::LocalKeyProvider;
use cmek::{EncryptionContext, Error, KeyProvider, SecretKey};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let path = match std::env::args_os().nth(1) {
        Some(p) => p.into(),
        None => scratch.path().join("root.keys"),
    };

    // 1. The root of trust: a local key file (0600) holding one root key.
    let provider = LocalKeyProvider::open_or_create(&path, "local")?;
    let root = match provider.list_keys().into_iter().next() {
        Some(info) => info.key,
        None => provider.add_key("root-1")?,
    };
    println!("root key      {root} in {}", provider.path().display());

    // 2. A zone key, wrapped under the root key and bound to its context.
    let context = EncryptionContext::new()
        .with("zone", "orders")
        .with("purpose", "ezk")
        .with("ezk-version", "1");
    let (ezk, wrapped) = provider.generate_key(&root, &context).await?;
    println!(
        "wrapped EZK   {} bytes: {}",
        wrapped.len(),
        hex::encode(wrapped.as_bytes())
    );
    println!("EZK itself    {ezk:?}");

    // 3. Opening the zone later: unwrap with the same context.
    let unwrapped = provider.unwrap_key(&root, &wrapped, &context).await?;
    assert_eq!(unwrapped, ezk);
    println!("unwrapped     same EZK (constant-time comparison)");

    // 4. The EZK in turn wraps per-segment data keys.
    let dek = SecretKey::generate()?;
    let ezk_wrapper: KeyWrapper = KeyWrapper::new(&unwrapped);
    let wrapped_dek = ezk_wrapper.wrap(&dek, b"zone=orders;segment=000001.log")?;
    assert_eq!(
        ezk_wrapper.unwrap(&wrapped_dek, b"zone=orders;segment=000001.log")?,
        dek
    );
    println!(
        "DEK           wrapped under the EZK ({} bytes) and back",
        wrapped_dek.len()
    );

    // 5. A different context cannot unwrap: the blob is bound to its zone.
    let other = context.clone().with("zone", "payments");
    match provider.unwrap_key(&root, &wrapped, &other).await {
        Err(e @ Error::Integrity { .. }) => println!("other zone    refused: {e}"),
        other => return Err(format!("expected an integrity failure, got {other:?}").into()),
    }

    // 6. Disabling the root key stops every unwrap until it is re-enabled.
    provider.disable_key(root.key_id())?;
    match provider.unwrap_key(&root, &wrapped, &context).await {
        Err(e @ Error::KeyUnavailable { .. }) => println!("key disabled  refused: {e}"),
        other => return Err(format!("expected key unavailable, got {other:?}").into()),
    }
    provider.enable_key(root.key_id())?;
    provider.unwrap_key(&root, &wrapped, &context).await?;
    println!("key enabled   unwrap works again");
    println!("ok");
    Ok(())
}
