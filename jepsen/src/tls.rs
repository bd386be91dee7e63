//! TLS for local clusters (`--tls`): a throw-away CA made when the cluster
//! starts, and for each process a certificate signed by it, naming the
//! process's role in its subject's OU (`raft-rm`, `worker`,
//! `coordinator`; the harness's own is `admin`) and its address. RMs and
//! workers require client certificates; coordinators ask for them
//! (Trino clients have none).
//!
//! The harness's HTTP clients come from [`http`]: over HTTPS with the
//! cluster's CA and the `admin` certificate while a TLS cluster runs, plain
//! otherwise. A harness runs one cluster at a time (a comparison runs its
//! modes one after another), so the cluster in force is process-wide.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use common::auth::SharedSecret;
use common::http::HttpClient;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// What the harness's clients use while a TLS cluster runs.
#[derive(Clone)]
struct Harness {
    client: Arc<rustls::ClientConfig>,
    /// The harness's own Trino user and password (it acts as the
    /// workloads' users by impersonation).
    password: String,
}

static HARNESS: RwLock<Option<Harness>> = RwLock::new(None);

/// The Trino user the harness authenticates as under `--tls`.
pub const HARNESS_USER: &str = "harness";

/// The user `jepsen cluster --tls` prints for people to connect as.
pub const OPERATOR_USER: &str = "me";

/// The harness's HTTP client: `secret` attached (internal calls), or, for
/// a Trino client (no secret), the harness's password while a TLS cluster
/// runs; over HTTPS while a TLS cluster runs.
pub fn http(secret: Option<SharedSecret>, timeout: Duration) -> HttpClient {
    let harness = HARNESS.read().unwrap_or_else(|p| p.into_inner()).clone();
    let trino_client = secret.is_none();
    let client = HttpClient::new(secret, timeout);
    match harness {
        None => client,
        Some(h) if trino_client => client
            .with_tls(Some(h.client))
            .with_basic_auth(HARNESS_USER, &h.password),
        Some(h) => client.with_tls(Some(h.client)),
    }
}

fn set_harness(h: Option<Harness>) {
    *HARNESS.write().unwrap_or_else(|p| p.into_inner()) = h;
}

fn random_password() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// A cluster's CA and the certificates it signed, in `<dir>/tls`.
pub struct LocalPki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    /// The password of [`OPERATOR_USER`].
    pub operator_password: String,
    /// The harness's internal clients of this cluster: its CA, and the
    /// `admin` certificate.
    pub harness_client: Arc<rustls::ClientConfig>,
}

/// The files a process is started with.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Issued {
    /// The flags that give a process these files.
    pub fn args(&self, client_auth: &str) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
            "--tls-ca".into(),
            self.ca.display().to_string(),
            "--tls-client-auth".into(),
            client_auth.into(),
        ]
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

impl LocalPki {
    /// A new CA in `dir` (replacing an earlier one), and the harness's
    /// clients set to trust it with an `admin` certificate.
    pub fn create(dir: &Path) -> Result<LocalPki> {
        let dir = dir.join("tls");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("wiping {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "raft-rm local cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&ca_key).context("signing the CA")?;
        std::fs::write(dir.join("ca.pem"), ca.pem()).context("writing the CA certificate")?;
        // Coordinators authenticate clients: the operator's user (who may
        // also act as `dashboard`), and the harness's, which may act as
        // any user (the workloads' users).
        let (operator_password, harness_password) = (random_password(), random_password());
        let hash = |p: &str| -> Result<String> {
            // Trino's files spell bcrypt `$2y$` (the same algorithm).
            Ok(bcrypt::hash(p, 8)?.replacen("$2b$", "$2y$", 1))
        };
        write_private(
            &dir.join("password.db"),
            &format!(
                "{OPERATOR_USER}:{}\n{HARNESS_USER}:{}\n",
                hash(&operator_password)?,
                hash(&harness_password)?
            ),
        )?;
        std::fs::write(
            dir.join("impersonation.json"),
            format!(
                r#"{{"impersonation": [
  {{"original_user": "{HARNESS_USER}", "new_user": ".*"}},
  {{"original_user": "{OPERATOR_USER}", "new_user": "dashboard"}}
]}}"#
            ),
        )
        .context("writing the impersonation rules")?;
        // JWTs signed HS256 with this secret are taken too.
        write_private(
            &dir.join("jwt-hs256.key"),
            &format!("{}{}\n", random_password(), random_password()),
        )?;
        let admin = issue(
            &dir,
            &ca,
            &ca_key,
            "harness",
            "admin",
            &["127.0.0.1".to_string()],
        )?;
        let identity = common::tls::Tls::load(
            &admin.cert,
            &admin.key,
            &admin.ca,
            common::tls::ClientAuth::Off,
        )
        .context("loading the harness's certificate")?;
        set_harness(Some(Harness {
            client: identity.client.clone(),
            password: harness_password,
        }));
        Ok(LocalPki {
            dir,
            ca,
            ca_key,
            operator_password,
            harness_client: identity.client,
        })
    }

    /// A coordinator's client authentication: the password file and the
    /// impersonation rules.
    pub fn coordinator_args(&self) -> Vec<String> {
        vec![
            "--password-file".into(),
            self.dir.join("password.db").display().to_string(),
            "--impersonation-rules".into(),
            self.dir.join("impersonation.json").display().to_string(),
            "--jwt-key-file".into(),
            self.dir.join("jwt-hs256.key").display().to_string(),
        ]
    }

    /// The CA certificate (what clients trust).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for process `name` in `role`, valid for `hosts` (IP
    /// addresses or names), written as `<name>.pem` and `<name>-key.pem`.
    pub fn issue(&self, name: &str, role: &str, hosts: &[String]) -> Result<Issued> {
        issue(&self.dir, &self.ca, &self.ca_key, name, role, hosts)
    }
}

fn issue(
    dir: &Path,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
    name: &str,
    role: &str,
    hosts: &[String],
) -> Result<Issued> {
    let mut names = hosts.to_vec();
    names.push("localhost".into());
    let mut params = CertificateParams::new(names).context("certificate names")?;
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, role);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().context("generating a key")?;
    let cert = params
        .signed_by(&key, ca, ca_key)
        .with_context(|| format!("signing {name}'s certificate"))?;
    let issued = Issued {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
        ca: dir.join("ca.pem"),
    };
    std::fs::write(&issued.cert, cert.pem())
        .with_context(|| format!("writing {}", issued.cert.display()))?;
    write_private(&issued.key, &key.serialize_pem())?;
    Ok(issued)
}

impl Drop for LocalPki {
    fn drop(&mut self) {
        set_harness(None);
    }
}
