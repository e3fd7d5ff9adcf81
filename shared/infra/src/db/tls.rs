//! TLS to PostgreSQL, with libpq's `sslmode` semantics (RDS forces TLS by default):
//!
//! | `sslmode` | encrypted | certificate checked | host name checked |
//! |---|---|---|---|
//! | `disable` | no | | |
//! | `prefer` (default) | when the server offers it | no | no |
//! | `require` | always | no | no |
//! | `verify-ca` | always | against the CA bundle | no |
//! | `verify-full` | always | against the CA bundle | yes |
//!
//! Both are given in `DATABASE_URL` as libpq takes them (`?sslmode=verify-full&sslrootcert=
//! /opt/rds-global-bundle.pem`); the CA bundle defaults to the system's roots. They are removed
//! from the URL before it reaches the driver, which knows neither `verify-*` nor `sslrootcert`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "disable" => SslMode::Disable,
            "prefer" | "allow" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// What the driver is told: whether TLS is optional or required.
    pub fn driver_mode(self) -> DriverSslMode {
        match self {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Prefer => DriverSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
        }
    }
}

/// `url` with its host (and port) replaced by `host` (`name` or `name:port`): how the
/// functions reach the database through RDS Proxy (`DATABASE_HOST`, the proxy's endpoint)
/// with the credentials, database and TLS settings of `DATABASE_URL`. Only the URL form
/// (`postgres://user:password@host:port/database?…`) has a host to replace.
pub fn with_host(url: &str, host: &str) -> Result<String, String> {
    let valid_host = !host.is_empty()
        && host.len() <= 260
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    if !valid_host {
        return Err(format!("`{host}` is not a host name (name or name:port)"));
    }
    let (scheme, rest) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme).map(|rest| (*scheme, rest)))
        .ok_or("DATABASE_URL is not a postgres:// URL, so it has no host to replace")?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The user information ends at the authority's last `@` (one in a password is `%40`).
    let user = authority.rfind('@').map_or("", |at| &authority[..=at]);
    Ok(format!("{scheme}{user}{host}{tail}"))
}

/// `DATABASE_URL` without `sslmode` / `sslrootcert`, and their values.
pub fn split_url(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None, None);
    };
    let (mut mode, mut root) = (None, None);
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some(("sslmode", v)) => {
                mode = Some(v.to_owned());
                false
            }
            Some(("sslrootcert", v)) => {
                root = Some(v.to_owned());
                false
            }
            _ => !pair.is_empty(),
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, mode, root)
}

/// The driver's configuration and TLS connector for `database_url`, honouring its `sslmode`
/// and `sslrootcert`.
pub fn client(database_url: &str) -> anyhow::Result<(tokio_postgres::Config, MakeRustlsConnect)> {
    use std::str::FromStr;
    let (url, mode, root) = split_url(database_url);
    let mode = match mode.as_deref() {
        None => SslMode::Prefer,
        Some(raw) => SslMode::parse(raw).ok_or_else(|| {
            anyhow::anyhow!(
                "DATABASE_URL: sslmode `{raw}` is not one of disable, prefer, require, verify-ca, verify-full"
            )
        })?,
    };
    let mut config = tokio_postgres::Config::from_str(&url)
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?;
    config.ssl_mode(mode.driver_mode());
    Ok((config, connector(mode, root.as_deref())?))
}

/// The driver's TLS connector for `mode`, trusting `ca_file` (PEM) or the system's roots.
pub fn connector(mode: SslMode, ca_file: Option<&str>) -> anyhow::Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("PostgreSQL TLS: {e}"))?;
    let config = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(roots(ca_file)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| anyhow::anyhow!("PostgreSQL TLS: {e}"))?;
            let verifier: Arc<dyn ServerCertVerifier> = if mode == SslMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn roots(ca_file: Option<&str>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("PostgreSQL TLS: cannot read CA file {path}: {e}"))?;
            let mut added = 0;
            for cert in rustls_pki_types_pem(&pem) {
                roots
                    .add(cert)
                    .map_err(|e| anyhow::anyhow!("PostgreSQL TLS: CA file {path}: {e}"))?;
                added += 1;
            }
            anyhow::ensure!(
                added > 0,
                "PostgreSQL TLS: CA file {path} holds no certificate"
            );
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(roots)
}

/// The certificates of a PEM bundle.
fn rustls_pki_types_pem(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// `prefer` / `require`: encrypted, but any certificate is accepted (libpq's meaning). The
/// handshake's signatures are still checked.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the host name is not compared.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_replaced_and_everything_else_kept() {
        assert_eq!(
            with_host(
                "postgres://app:p%40ss@db.internal:5433/docbundle?sslmode=verify-full",
                "proxy.proxy-abc.eu-west-1.rds.amazonaws.com"
            )
            .unwrap(),
            "postgres://app:p%40ss@proxy.proxy-abc.eu-west-1.rds.amazonaws.com/docbundle?sslmode=verify-full"
        );
        assert_eq!(
            with_host("postgresql://db?sslmode=require", "proxy:6432").unwrap(),
            "postgresql://proxy:6432?sslmode=require"
        );
        assert!(with_host("host=db user=app", "proxy").is_err());
        for hostile in ["", "a/b", "evil@host", "host?x=1", "a b", "h\u{0}"] {
            assert!(
                with_host("postgres://u@db/x", hostile).is_err(),
                "{hostile:?}"
            );
        }
    }

    #[test]
    fn libpq_options_are_taken_out_of_the_url() {
        let (url, mode, root) = split_url(
            "postgres://u:p@db:5432/app?sslmode=verify-full&application_name=x&sslrootcert=/ca.pem",
        );
        assert_eq!(url, "postgres://u:p@db:5432/app?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/ca.pem"));
        assert_eq!(
            split_url("postgres://db/app").0,
            "postgres://db/app".to_owned()
        );
        assert_eq!(
            split_url("postgres://db/app?sslmode=disable").0,
            "postgres://db/app"
        );
        assert_eq!(SslMode::parse("verify-ca"), Some(SslMode::VerifyCa));
        assert_eq!(SslMode::parse("bogus"), None);
    }
}
