//! Store locations and files that must be refused at open, leaving everything as it was.

use std::path::Path;

use oncely::*;

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// A store with many pages, closed (checkpointed into the main file).
async fn filled_store(path: &Path) {
    let store = SqliteStore::open(path, SqliteConfig::default()).unwrap();
    let outbox = Outbox::open(store, OutboxConfig::new("q")).unwrap();
    let messages = (0..2000).map(|n| NewMessage::new(vec![b'p'; 300]).id(format!("m{n:05}"))).collect();
    outbox.enqueue_many(messages).await.unwrap();
}

/// A page overwritten in the middle of the file: SQLite only notices when a statement reads that
/// page, so without a check at open the store opens and goes on writing around the damage.
#[tokio::test]
async fn a_store_with_a_damaged_page_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    filled_store(&path).await;
    let mut data = bytes(&path);
    let pages = data.len() / 4096;
    assert!(pages > 20, "{pages} pages");
    let at = (pages / 2) * 4096;
    data[at..at + 4096].iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7 % 251) as u8);
    std::fs::write(&path, &data).unwrap();
    let err = SqliteStore::open(&path, SqliteConfig::default()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::CorruptStore, "{err}");
    assert!(err.to_string().contains("damaged"), "{err}");
    assert!(err.to_string().len() < 400, "bounded: {err}");
    assert_eq!(bytes(&path), data, "the refused file was changed");
    assert!(
        !dir.path().join("s.db-wal").exists()
            || std::fs::metadata(dir.path().join("s.db-wal")).unwrap().len() == 0
    );
    // Opting out of the check opens it (for stores too large to read at every open).
    let unchecked = SqliteConfig { verify_on_open: false, ..SqliteConfig::default() };
    assert!(SqliteStore::open(&path, unchecked).is_ok());
}

/// An intact store passes the check and opens as before.
#[tokio::test]
async fn an_intact_store_opens_with_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    filled_store(&path).await;
    let store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
    let outbox = Outbox::open(store, OutboxConfig::new("q")).unwrap();
    assert_eq!(outbox.stats().await.unwrap().queue.depth(), 2000);
}

/// A dangling symbolic link is refused; its target is not created.
#[cfg(unix)]
#[test]
fn a_dangling_symlink_is_refused_and_its_target_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("gone/s.db");
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = SqliteStore::open(&link, SqliteConfig::default()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    assert!(err.to_string().contains("dangling link"), "{err}");
    let target = dir.path().join("elsewhere.db");
    let link2 = dir.path().join("link2.db");
    std::os::unix::fs::symlink(&target, &link2).unwrap();
    let err = AnyStore::open(link2.to_str().unwrap(), SqliteConfig::default()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    assert!(!target.exists(), "the link's target was created");
    // A link to an existing store is followed as before.
    let real = dir.path().join("real.db");
    drop(SqliteStore::open(&real, SqliteConfig::default()).unwrap());
    let link3 = dir.path().join("link3.db");
    std::os::unix::fs::symlink(&real, &link3).unwrap();
    assert!(SqliteStore::open(&link3, SqliteConfig::default()).is_ok());
}

/// A libpq key/value string, or a location with another scheme, is not a file name: refused
/// before anything is created, without quoting the password.
#[test]
fn locations_that_are_not_stores_are_refused_without_creating_files() {
    for location in [
        "host=db user=app password=s3cret dbname=orders",
        "  dbname=orders",
        "user = app password=s3cret",
        "mysql://app:s3cret@db/orders",
        "redis://localhost:6379",
        "https://example.invalid/x.db",
    ] {
        let err = AnyStore::open(location, SqliteConfig::default()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument, "{location}: {err}");
        assert!(!err.to_string().contains("s3cret"), "{location}: the password is in {err}");
        assert!(!Path::new(location).exists(), "{location}: a file was created");
    }
    let err = AnyStore::open("host=db password=s3cret", SqliteConfig::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid argument `location`: looks like a PostgreSQL key/value connection string; write it as a URL: postgres://user:password@host:port/dbname"
    );
    // Plain paths that happen to contain `=` or `:` are still paths.
    let dir = tempfile::tempdir().unwrap();
    for name in ["a=b.db", "c:d.db", "weird=host.db"] {
        let p = dir.path().join(name);
        assert!(AnyStore::open(p.to_str().unwrap(), SqliteConfig::default()).is_ok(), "{name}");
    }
}
