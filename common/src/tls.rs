//! TLS for every process, with rustls (its `ring` provider; no OpenSSL),
//! from PEM files.
//!
//! - A process has one [`Identity`]: its certificate chain and key. It
//!   serves with it, and presents it as a client certificate when another
//!   process asks for one (mutual TLS). It is read again when either file
//!   changes (checked every [`RELOAD_CHECK`]) or on SIGHUP
//!   ([`Identity::keep_fresh`]): new handshakes use the new pair, open
//!   connections keep theirs, so nothing is dropped (a Raft leader keeps
//!   its leadership). A pair that does not load is logged and the old one
//!   stays.
//! - Peers are verified against the CA file (`--tls-ca`): servers always;
//!   clients' certificates as `--tls-client-auth` says (`off`, `optional`:
//!   verified when presented, `required`).
//! - A client certificate names its holder's role in its subject's
//!   organizational unit (`OU=raft-rm`, `coordinator`, `worker`, `admin`):
//!   [`role_of`]. A route may be limited to roles (an RM takes Raft RPCs
//!   only from `raft-rm` certificates).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use tokio::sync::watch;

/// How often the certificate and key files are checked for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The roles a certificate may name (its subject's `OU`).
pub const ROLES: [&str; 4] = ["raft-rm", "coordinator", "worker", "admin"];

#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Config(String),
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// The one crypto provider: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, format!("no private key: {e}")))
}

/// The CA certificates in `path`, as trust anchors.
pub fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// Whether a server asks clients for certificates.
#[derive(clap::ValueEnum, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// It does not ask.
    #[default]
    Off,
    /// It asks, and verifies what is presented; clients without one are
    /// let in (Trino clients of a coordinator).
    Optional,
    /// Every client must present a certificate the CA signed.
    Required,
}

/// What a file looked like when it was read: a change reloads it (the
/// certificates here, the coordinator's password file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// `path`'s [`Stamp`] now (`None`: it cannot be read).
pub fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp {
        modified: m.modified().ok(),
        len: m.len(),
    })
}

/// This process's certificate and key, reloaded when they change.
pub struct Identity {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, Option<Stamp>, Option<Stamp>)>,
    reloads: AtomicU64,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl Identity {
    pub fn load(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
        let provider = provider();
        let pair = Self::read(&provider, cert, key)?;
        Ok(Identity {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: RwLock::new((pair, stamp(cert), stamp(key))),
            reloads: AtomicU64::new(0),
        })
    }

    fn read(
        provider: &CryptoProvider,
        cert: &Path,
        key: &Path,
    ) -> Result<Arc<CertifiedKey>, TlsError> {
        let pair = CertifiedKey::from_der(read_certs(cert)?, read_key(key)?, provider)
            .map_err(|e| file_error(key, format!("does not go with {}: {e}", cert.display())))?;
        Ok(Arc::new(pair))
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Reads the pair again if either file changed since (`force`: in any
    /// case). `Ok(true)`: a new pair is in use.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let (cert_stamp, key_stamp) = (stamp(&self.cert), stamp(&self.key));
        {
            let now = self.current.read().unwrap_or_else(|p| p.into_inner());
            if !force && now.1 == cert_stamp && now.2 == key_stamp {
                return Ok(false);
            }
        }
        let pair = Self::read(&self.provider, &self.cert, &self.key);
        let mut now = self.current.write().unwrap_or_else(|p| p.into_inner());
        // A failed read is not retried until the files change again.
        now.1 = cert_stamp;
        now.2 = key_stamp;
        now.0 = pair?;
        self.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// How many times a new pair was taken.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Reloads on SIGHUP and when the files change, until `stop`.
    pub async fn keep_fresh(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(RELOAD_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let force = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => false,
                _ = async {
                    match hup.as_mut() {
                        Some(h) => { h.recv().await; }
                        None => std::future::pending().await,
                    }
                } => true,
            };
            match self.reload(force) {
                Ok(true) => tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate not reloaded; the previous one stays in use")
                }
            }
        }
    }
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let pair = self.current();
        pair.key.choose_scheme(sigschemes).map(|_| pair)
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A process's TLS: its identity, and the server and client sides built
/// on it with the CA.
#[derive(Clone)]
pub struct Tls {
    pub identity: Arc<Identity>,
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    pub client_auth: ClientAuth,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("identity", &self.identity)
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

impl Tls {
    /// Whether this process verifies its callers' certificates (mutual
    /// TLS), so routes may be limited to roles.
    pub fn mutual(&self) -> bool {
        self.client_auth != ClientAuth::Off
    }

    pub fn load(
        cert: &Path,
        key: &Path,
        ca: &Path,
        client_auth: ClientAuth,
    ) -> Result<Tls, TlsError> {
        let identity = Arc::new(Identity::load(cert, key)?);
        let roots = read_roots(ca)?;
        let provider = provider();
        let verifier = match client_auth {
            ClientAuth::Off => WebPkiClientVerifier::no_client_auth(),
            ClientAuth::Optional => {
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?
            }
            ClientAuth::Required => {
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?
            }
        };
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(identity.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let client = client_config(&roots, Some(identity.clone()))?;
        Ok(Tls {
            identity,
            server: Arc::new(server),
            client: Arc::new(client),
            client_auth,
        })
    }
}

/// A client that verifies servers against `roots`, presenting `identity`
/// when a server asks for a certificate.
pub fn client_config(
    roots: &Arc<RootCertStore>,
    identity: Option<Arc<Identity>>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots.clone());
    Ok(match identity {
        Some(id) => builder.with_client_cert_resolver(id),
        None => builder.with_no_client_auth(),
    })
}

/// The role a certificate names: the first organizational unit (`OU`) of
/// its subject, if it is one of [`ROLES`].
pub fn role_of(cert: &CertificateDer<'_>) -> Option<&'static str> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let ou = parsed
        .subject()
        .iter_organizational_unit()
        .next()?
        .as_str()
        .ok()?;
    ROLES.iter().copied().find(|r| *r == ou)
}

/// The TLS flags every process takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// This process's certificate chain (PEM). With it, the process
    /// serves HTTPS and calls the others over HTTPS. Reloaded when it
    /// changes or on SIGHUP.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA certificates (PEM) that peers' certificates must chain to.
    #[arg(long, requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Whether clients must present a certificate the CA signed (mutual
    /// TLS). Its subject's OU names its role (raft-rm, coordinator,
    /// worker, admin).
    #[arg(long, value_enum, default_value_t = ClientAuth::Off)]
    pub tls_client_auth: ClientAuth,
}

impl TlsArgs {
    /// The TLS these flags ask for (`None`: plain HTTP).
    pub fn load(&self) -> Result<Option<Tls>, String> {
        from_files(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_ca.as_deref(),
            self.tls_client_auth,
        )
    }
}

/// The TLS of a certificate, key and CA file, all three or none (`None`:
/// plain HTTP). The message names the flag at fault.
pub fn from_files(
    cert: Option<&Path>,
    key: Option<&Path>,
    ca: Option<&Path>,
    client_auth: ClientAuth,
) -> Result<Option<Tls>, String> {
    match (cert, key, ca) {
        (None, None, None) if client_auth == ClientAuth::Off => Ok(None),
        (None, None, None) => {
            Err("tls-client-auth: needs --tls-cert, --tls-key and --tls-ca".into())
        }
        (Some(cert), Some(key), Some(ca)) => Tls::load(cert, key, ca, client_auth)
            .map(Some)
            .map_err(|e| e.to_string()),
        _ => Err("tls-cert, tls-key, tls-ca: give all three, or none".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, IsCa, KeyPair};

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn new_ca(dir: &Path) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Ca { cert, key }
    }

    /// Writes `name.pem` and `name-key.pem`, OU `role`, for 127.0.0.1.
    fn issue(dir: &Path, ca: &Ca, name: &str, role: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn a_certificate_names_its_role_in_its_ou() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(dir.path());
        for (role, want) in [
            ("raft-rm", Some("raft-rm")),
            ("worker", Some("worker")),
            ("nobody", None),
        ] {
            let (cert, _) = issue(dir.path(), &ca, role, role);
            let der = read_certs(&cert).unwrap().remove(0);
            assert_eq!(role_of(&der), want, "{role}");
        }
    }

    #[test]
    fn a_changed_pair_is_taken_and_a_broken_one_leaves_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(dir.path());
        let (cert, key) = issue(dir.path(), &ca, "n1", "raft-rm");
        let id = Identity::load(&cert, &key).unwrap();
        let first = id.current().cert[0].clone();
        assert!(!id.reload(false).unwrap(), "nothing changed");
        issue(dir.path(), &ca, "n1", "raft-rm");
        assert!(id.reload(false).unwrap(), "new files are taken");
        assert_ne!(id.current().cert[0], first);
        assert_eq!(id.reloads(), 1);
        // A key that does not go with the certificate: refused, old kept.
        let now = id.current().cert[0].clone();
        let (_, other_key) = issue(dir.path(), &ca, "other", "raft-rm");
        std::fs::copy(&other_key, &key).unwrap();
        let e = id.reload(true).unwrap_err();
        assert!(e.to_string().contains("does not go with"), "{e}");
        assert_eq!(id.current().cert[0], now);
    }

    #[test]
    fn flags_come_all_three_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(dir.path());
        let (cert, key) = issue(dir.path(), &ca, "c1", "coordinator");
        let none = from_files(None, None, None, ClientAuth::Off).unwrap();
        assert!(none.is_none());
        let e = from_files(Some(&cert), None, None, ClientAuth::Off).unwrap_err();
        assert!(e.contains("all three"), "{e}");
        let e = from_files(None, None, None, ClientAuth::Required).unwrap_err();
        assert!(e.contains("needs --tls-cert"), "{e}");
        let e = from_files(
            Some(&cert),
            Some(&key),
            Some(&dir.path().join("missing.pem")),
            ClientAuth::Off,
        )
        .unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        let tls = from_files(
            Some(&cert),
            Some(&key),
            Some(&dir.path().join("ca.pem")),
            ClientAuth::Optional,
        )
        .unwrap()
        .unwrap();
        assert_eq!(tls.client_auth, ClientAuth::Optional);
    }

    #[tokio::test]
    async fn a_tls_server_knows_its_peers_role_and_refuses_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(dir.path());
        let (cert, key) = issue(dir.path(), &ca, "n1", "raft-rm");
        let server = Tls::load(
            &cert,
            &key,
            &dir.path().join("ca.pem"),
            ClientAuth::Required,
        )
        .unwrap();
        let mut s = crate::service::Supervisor::default();
        let listener = crate::service::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new().route(
            "/who",
            axum::routing::get(
                |axum::extract::ConnectInfo(p): axum::extract::ConnectInfo<
                    crate::listener::Peer,
                >| async move { format!("{:?} {}", p.role, p.tls) },
            ),
        );
        s.serve(listener, Some(&server), app);
        let (wcert, wkey) = issue(dir.path(), &ca, "w1", "worker");
        let worker = Tls::load(&wcert, &wkey, &dir.path().join("ca.pem"), ClientAuth::Off).unwrap();
        let http = crate::http::HttpClient::new(None, std::time::Duration::from_secs(5))
            .with_tls(Some(worker.client));
        let url = http.url(&addr, "/who");
        assert!(url.starts_with("https://"), "{url}");
        let body = http.get_bytes(&url, &[]).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&body), "Some(\"worker\") true");
        // Another CA's certificate: the handshake fails.
        let other_dir = tempfile::tempdir().unwrap();
        let other = new_ca(other_dir.path());
        let (ocert, okey) = issue(other_dir.path(), &other, "x", "worker");
        let stranger =
            Tls::load(&ocert, &okey, &dir.path().join("ca.pem"), ClientAuth::Off).unwrap();
        let e = crate::http::HttpClient::new(None, std::time::Duration::from_secs(5))
            .with_tls(Some(stranger.client))
            .get_bytes(&url, &[])
            .await
            .unwrap_err();
        assert_eq!(e.status(), None, "{e}");
        s.shutdown(std::time::Duration::from_secs(1)).await;
    }
}
