//! TLS to PostgreSQL, as libpq's `sslmode` names it, over rustls.
//!
//! The PostgreSQL client understands `sslmode` disable, prefer and require only, and without a
//! TLS implementation `prefer` quietly meant plaintext. oncely takes the TLS parameters out of
//! the URL itself and gives the client a rustls connector that does what libpq's mode says:
//!
//! | `sslmode` | encrypts | checks the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers TLS | no |
//! | `require` | always (refused otherwise) | no |
//! | `verify-ca` | always | signed by `sslrootcert`'s CA |
//! | `verify-full` | always | signed by that CA **and** issued for the host connected to |
//!
//! `sslrootcert` names a PEM file of CA certificates (required by the verify modes);
//! `sslcert` and `sslkey` a client certificate and its key (PEM), for servers that ask for one.
//! rustls is used rather than native-tls/OpenSSL so that building oncely needs no system TLS
//! library, and with its `ring` provider, which builds with just a C compiler.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{Error, Result};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS part of a location.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    pub mode: SslMode,
    root_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

/// How connections are made: in plaintext, or through rustls.
#[derive(Clone)]
pub(crate) enum Tls {
    Plain,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl Tls {
    /// Connects with `config` (whose `ssl_mode` [`split`] set).
    pub(crate) fn connect(
        &self,
        config: &postgres::Config,
    ) -> std::result::Result<postgres::Client, postgres::Error> {
        match self {
            Tls::Plain => config.connect(postgres::NoTls),
            Tls::Rustls(t) => config.connect(t.clone()),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .flatten();
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of a PostgreSQL URL: the rest (with
/// the `sslmode` the client understands) and the TLS settings.
pub(crate) fn split(url: &str) -> Result<(String, TlsSettings)> {
    let mut settings =
        TlsSettings { mode: SslMode::Prefer, root_cert: None, client_cert: None, client_key: None };
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "sslmode" => {
                settings.mode = match value.as_str() {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(Error::invalid(
                            "location",
                            format!(
                                "has an unknown sslmode `{}` (expected disable, prefer, require, verify-ca or verify-full)",
                                crate::text::quote(other)
                            ),
                        ));
                    }
                }
            }
            "sslrootcert" => settings.root_cert = Some(value.into()),
            "sslcert" => settings.client_cert = Some(value.into()),
            "sslkey" => settings.client_key = Some(value.into()),
            _ => kept.push(pair),
        }
    }
    // What the client itself understands; the verify modes are rustls's part (`connector`).
    kept.push(match settings.mode {
        SslMode::Disable => "sslmode=disable",
        SslMode::Prefer => "sslmode=prefer",
        _ => "sslmode=require",
    });
    Ok((format!("{base}?{}", kept.join("&")), settings))
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid("location", format!("{what}: {}", crate::text::quote(&e.to_string())))
}

fn roots(path: &PathBuf) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(&format!("cannot read sslrootcert {}", path.display()), e))?;
    for cert in certs {
        let cert = cert.map_err(|e| tls_error("sslrootcert holds an unreadable certificate", e))?;
        roots.add(cert).map_err(|e| tls_error("sslrootcert holds an unusable certificate", e))?;
    }
    if roots.is_empty() {
        return Err(Error::invalid(
            "location",
            format!("sslrootcert {} holds no certificate", path.display()),
        ));
    }
    Ok(roots)
}

/// The connector for `settings`.
pub(crate) fn connector(settings: &TlsSettings) -> Result<Tls> {
    if settings.mode == SslMode::Disable {
        return Ok(Tls::Plain);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS", e))?;
    let verified = match (settings.mode, &settings.root_cert) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(Error::invalid(
                "location",
                "sslmode verify-ca and verify-full need sslrootcert (a PEM file of CA certificates)",
            ));
        }
        (SslMode::VerifyFull, Some(path)) => builder.with_root_certificates(roots(path)?),
        (SslMode::VerifyCa, Some(path)) => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(path)?), provider.clone())
                .build()
                .map_err(|e| tls_error("sslrootcert", e))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyName(inner)))
        }
        _ => builder.dangerous().with_custom_certificate_verifier(Arc::new(Unchecked(provider))),
    };
    let config = match (&settings.client_cert, &settings.client_key) {
        (None, None) => verified.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| tls_error(&format!("cannot read sslcert {}", cert.display()), e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| tls_error("sslcert holds an unreadable certificate", e))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| tls_error(&format!("cannot read sslkey {}", key.display()), e))?;
            verified.with_client_auth_cert(chain, key).map_err(|e| tls_error("sslcert and sslkey", e))?
        }
        _ => return Err(Error::invalid("location", "sslcert and sslkey go together")),
    };
    Ok(Tls::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

/// `verify-ca`: the chain must lead to a trusted CA; the name in the certificate is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require`: encrypted, the certificate not checked (as libpq does without a root
/// certificate); the handshake's signatures still are.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
