//! TLS to PostgreSQL, against a real server with `ssl=on` and certificates this test makes with
//! the `openssl` command: every `sslmode` does what libpq's does — `prefer` and `require`
//! encrypt, `verify-ca` checks the CA, `verify-full` also the host name (a wrong one is refused),
//! `disable` does not encrypt. Needs `ONCELY_POSTGRES_URL` and `openssl`; skips loudly without
//! them, fails under CI.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use oncely::postgres::{Client, NoTls};
use oncely::sql::SqlValue;
use oncely::{AnyStore, ErrorCode, PostgresConfig, PostgresStore};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl is missing");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for `localhost` signed by it, and a second, unrelated CA.
fn certificates(dir: &Path) {
    std::fs::write(dir.join("san.cnf"), "subjectAltName = DNS:localhost\n").unwrap();
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=oncely test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
            "-out",
            "server.crt",
        ],
    );
}

fn admin(url: &str, sql: &str) {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    // One statement at a time: ALTER SYSTEM cannot run inside the transaction a batch makes.
    std::thread::spawn(move || {
        let mut c = Client::connect(&url, NoTls).unwrap();
        for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            c.batch_execute(stmt).unwrap();
        }
    })
    .join()
    .unwrap();
}

/// Whether the store's own connection is encrypted, as the server sees it.
fn encrypted(store: PostgresStore) -> bool {
    let any = AnyStore::Postgres(store);
    let rows =
        oncely::runtime::block_on(any.in_transaction(|tx| {
            tx.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        }))
        .unwrap()
        .unwrap();
    rows == vec![vec![SqlValue::Integer(1)]]
}

#[test]
fn every_sslmode_does_what_libpq_does() {
    let Some(url) = support::postgres_url() else { return };
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "openssl is missing under CI: the TLS test must not skip"
        );
        eprintln!("!! SKIPPED: TLS test (no openssl command)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    // The server reads its key as the user it runs as, and wants it private.
    let key = dir.path().join("server.key");
    let data_dir: String = std::thread::spawn({
        let url = url.clone();
        move || Client::connect(&url, NoTls).unwrap().query_one("SHOW data_directory", &[]).unwrap().get(0)
    })
    .join()
    .unwrap();
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&data_dir).unwrap());
    std::os::unix::fs::chown(&key, Some(owner), None).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let d = dir.path().display();
    admin(
        &url,
        &format!(
            "ALTER SYSTEM SET ssl_cert_file = '{d}/server.crt'; ALTER SYSTEM SET ssl_key_file = '{d}/server.key'; ALTER SYSTEM SET ssl = on; SELECT pg_reload_conf();"
        ),
    );
    // Whatever happens below, the shared test server goes back to plaintext-only.
    struct Reset(String);
    impl Drop for Reset {
        fn drop(&mut self) {
            admin(
                &self.0,
                "ALTER SYSTEM RESET ssl; ALTER SYSTEM RESET ssl_cert_file; ALTER SYSTEM RESET ssl_key_file; SELECT pg_reload_conf();",
            );
        }
    }
    let _reset = Reset(url.clone());
    let with = |params: &str, host: &str| {
        let u = url.replacen("127.0.0.1", host, 1);
        let sep = if u.contains('?') { '&' } else { '?' };
        format!("{u}{sep}{params}")
    };
    let open = |u: &str| PostgresStore::open(u, PostgresConfig { pool_size: 1, ..PostgresConfig::default() });
    // The reload takes a moment.
    let started = Instant::now();
    while open(&with("sslmode=require", "127.0.0.1")).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "the server did not turn TLS on");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ca = format!("sslrootcert={d}/ca.crt");
    let other = format!("sslrootcert={d}/other-ca.crt");
    {
        assert!(
            encrypted(open(&with("", "127.0.0.1")).unwrap()),
            "no sslmode (prefer) connected in plaintext"
        );
        assert!(
            encrypted(open(&with("sslmode=prefer", "127.0.0.1")).unwrap()),
            "prefer connected in plaintext"
        );
        assert!(encrypted(open(&with("sslmode=require", "127.0.0.1")).unwrap()));
        assert!(encrypted(open(&with(&format!("sslmode=verify-ca&{ca}"), "127.0.0.1")).unwrap()));
        assert!(encrypted(open(&with(&format!("sslmode=verify-full&{ca}"), "localhost")).unwrap()));
        assert!(!encrypted(open(&with("sslmode=disable", "127.0.0.1")).unwrap()), "disable encrypted");
        // The certificate is for `localhost`, not for 127.0.0.1: verify-full refuses it.
        let e = open(&with(&format!("sslmode=verify-full&{ca}"), "127.0.0.1")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Storage, "{e}");
        assert!(e.to_string().contains("cannot connect"), "{e}");
        // Signed by a CA we do not trust: verify-ca and verify-full refuse it.
        assert!(open(&with(&format!("sslmode=verify-ca&{other}"), "127.0.0.1")).is_err());
        assert!(open(&with(&format!("sslmode=verify-full&{other}"), "localhost")).is_err());
        // The verify modes need a root certificate; an unknown mode is refused.
        let e = open(&with("sslmode=verify-full", "localhost")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
        let e = open(&with("sslmode=sometimes", "localhost")).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    }
}
