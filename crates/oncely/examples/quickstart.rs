//! The README's Rust quickstart: one payment delivered three times is charged once.
//!
//! Run: `cargo run -p oncely --example quickstart [-- PATH.db]`

use oncely::{Failure, Inbox, InboxConfig, Request, SqliteConfig, SqliteStore};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = std::env::args().nth(1).map(Into::into).unwrap_or_else(|| dir.path().join("quickstart.db"));
    // ANCHOR: quickstart
    // An inbox in an SQLite file: the processed-ID store of the "payments" receiver.
    let store = SqliteStore::open(&path, SqliteConfig::default())?;
    let inbox = Inbox::open(store, InboxConfig::new("payments"))?;

    // The sender retried (its ack was lost), so the same message arrives three times.
    for delivery in 1..=3 {
        let outcome = inbox
            .process(Request::new("payment-42").payload(b"debit 10 EUR"), || async {
                println!("  charging 10 EUR for payment-42");
                Ok::<_, Failure<std::io::Error>>(b"charge ch_1".to_vec())
            })
            .await?;
        let result = String::from_utf8_lossy(outcome.result.as_deref().unwrap_or_default()).into_owned();
        println!("delivery {delivery}: result {result:?}, replayed: {}", outcome.replayed);
    }

    // The same id with a different payload is a client bug, not a duplicate.
    let clash = inbox.process(Request::new("payment-42").payload(b"debit 99 EUR"), || async {
        Ok::<_, Failure<std::io::Error>>(vec![])
    });
    println!("different payload: {}", clash.await.unwrap_err());
    // ANCHOR_END: quickstart
    Ok(())
}
