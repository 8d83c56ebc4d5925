//! TLS on the node's listeners (`[tls.websocket]` → `wss://`, `[tls.control]` → `https://`,
//! optionally requiring client certificates): rustls with the aws-lc-rs provider (its RSA
//! signatures are about twice ring's rate, and each full handshake costs the server one; the
//! rest of the node keeps ring), TLS 1.2 and 1.3,
//! HTTP/1.1 by ALPN. The certificate is served through a resolver that a reload (SIGHUP,
//! `POST /@admin/reload`) swaps, so new handshakes get the new certificate and established
//! connections keep theirs. The client CA of the control listener is fixed at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use gangway_broker::config::{ConfigProblem, Section};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// One listener's `[tls.*]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `cert_file`: the PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// `key_file`: its PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// `client_ca_file` (control only): client certificates must chain to these.
    pub client_ca_file: Option<PathBuf>,
}

/// `[tls]`: which listeners speak TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// `[tls.websocket]`.
    pub websocket: Option<TlsFiles>,
    /// `[tls.control]`.
    pub control: Option<TlsFiles>,
}

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the kind needed.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refused the material (e.g. a key of an unsupported type, a bad CA).
    #[error("{0}")]
    Rustls(String),
}

fn file_error(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// Reads `[tls]`, recording every problem, and checks that every named file loads.
pub fn read(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> TlsConfig {
    let Some(value) = table.get("tls") else {
        return TlsConfig::default();
    };
    let Some(tls) = value.as_table() else {
        problems.push(ConfigProblem {
            key: "tls".into(),
            message: "must be a table ([tls.websocket], [tls.control])".into(),
        });
        return TlsConfig::default();
    };
    let mut out = TlsConfig::default();
    for (name, value) in tls {
        let prefix = format!("tls.{name}");
        let Some(t) = value.as_table() else {
            problems.push(ConfigProblem {
                key: prefix,
                message: "must be a table".into(),
            });
            continue;
        };
        let mut r = Section::from_table(t, prefix.clone(), problems);
        let cert = r.string("cert_file");
        let key = r.string("key_file");
        let client_ca = if name == "control" {
            r.string("client_ca_file")
        } else {
            None
        };
        r.finish();
        let (Some(cert), Some(key)) = (cert, key) else {
            problems.push(ConfigProblem {
                key: prefix,
                message: "needs both cert_file and key_file".into(),
            });
            continue;
        };
        let files = TlsFiles {
            cert_file: cert.into(),
            key_file: key.into(),
            client_ca_file: client_ca.map(PathBuf::from),
        };
        if let Err(e) = certified_key(&files) {
            problems.push(ConfigProblem {
                key: format!("{prefix}.cert_file"),
                message: e.to_string(),
            });
        }
        if let Some(ca) = &files.client_ca_file {
            if let Err(e) = roots(ca) {
                problems.push(ConfigProblem {
                    key: format!("{prefix}.client_ca_file"),
                    message: e.to_string(),
                });
            }
        }
        match name.as_str() {
            "websocket" => out.websocket = Some(files),
            "control" => out.control = Some(files),
            _ => problems.push(ConfigProblem {
                key: prefix,
                message: "unknown listener (websocket, control)".into(),
            }),
        }
    }
    out
}

/// Loads the chain and key of `files` into a signing identity.
pub fn certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|e| file_error(&files.cert_file, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert_file, e))?;
    if chain.is_empty() {
        return Err(file_error(&files.cert_file, "no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| file_error(&files.key_file, format!("no private key: {e}")))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", files.key_file.display())))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| TlsError::Rustls(format!("the key does not match the certificate: {e}")))?;
    Ok(certified)
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_error(path, e))? {
        roots
            .add(cert.map_err(|e| file_error(path, e))?)
            .map_err(|e| file_error(path, e))?;
    }
    if roots.is_empty() {
        return Err(file_error(path, "no certificate in it"));
    }
    Ok(roots)
}

/// The certificate a listener serves, swapped whole by a reload.
#[derive(Debug)]
pub struct Certificate(ArcSwap<CertifiedKey>);

impl Certificate {
    /// Serves `key` to new handshakes from now on.
    pub fn store(&self, key: CertifiedKey) {
        self.0.store(Arc::new(key));
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The listeners' crypto: aws-lc-rs (see the module documentation).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The server configuration for `files` and the handle that reloads its certificate.
pub fn server_config(
    files: &TlsFiles,
) -> Result<(rustls::ServerConfig, Arc<Certificate>), TlsError> {
    let certificate = Arc::new(Certificate(ArcSwap::from_pointee(certified_key(files)?)));
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &files.client_ca_file {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?,
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_cert_resolver(Arc::clone(&certificate) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Stateless session tickets (keys rotated every 6 hours, in memory only), as nginx sends
    // by default: a client that reconnects resumes without the server's signature — the
    // handshake's main cost — and without a per-session cache on the node.
    config.ticketer =
        rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok((config, certificate))
}
