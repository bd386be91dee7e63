//! Client authentication, as Trino does it.
//!
//! - **Password file** (`--password-file`), in Trino's format: one
//!   `user:hash` per line, the hash bcrypt (`$2y$`, cost at least 8) or
//!   PBKDF2 (`iterations:salt:hash` in hex, at least 1000 iterations;
//!   HMAC-SHA1 as Trino computes it, HMAC-SHA256 accepted too). It is read
//!   again when it changes (checked at most every [`REFRESH`], as Trino's
//!   `file.refresh-period`). Passwords are taken only over HTTPS: a
//!   password over plain HTTP is refused, as Trino refuses it, whether or
//!   not authentication is configured.
//! - **Impersonation** (`--impersonation-rules`), Trino's file-based rules:
//!   `{"impersonation": [{"original_user": REGEX, "new_user": REGEX,
//!   "allow": BOOL}]}`, the first rule whose `original_user` matches the
//!   authenticated user and whose `new_user` (with `$1`... from the first
//!   match) matches the requested user decides; no rule: refused. A user
//!   may always be themselves.
//!
//! - **JWT** (`--jwt-key-file`): `Authorization: Bearer <token>`, over
//!   HTTPS only, signed HS256 (the file holds the shared secret), RS256 or
//!   ES256 (the file holds a PEM public key); the principal is its `sub`;
//!   `exp` and `nbf` are checked. Trino's `jwt.key-file`, for one key.
//!
//! Verified credentials are remembered (at most [`CACHE_MAX`], keyed by a
//! digest of the password, forgotten when the file changes), because a
//! bcrypt check costs milliseconds and clients send the password with
//! every poll.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use regex::Regex;

/// How often the password file is checked for a change.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Most verified credentials remembered.
pub const CACHE_MAX: usize = 1000;

/// Trino's challenge.
pub const CHALLENGE: &str = "Basic realm=\"Trino\"";

const BCRYPT_MIN_COST: u32 = 8;
const PBKDF2_MIN_ITERATIONS: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hash {
    Bcrypt(String),
    Pbkdf2 {
        iterations: std::num::NonZeroU32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Hash {
    fn parse(text: &str) -> Result<Hash, String> {
        if text.starts_with("$2y$") {
            let cost: u32 = text
                .get(4..6)
                .and_then(|c| c.parse().ok())
                .ok_or("a bcrypt hash without its cost")?;
            if cost < BCRYPT_MIN_COST {
                return Err(format!(
                    "Minimum cost of BCrypt password must be {BCRYPT_MIN_COST}"
                ));
            }
            text.parse::<bcrypt::HashParts>()
                .map_err(|e| format!("not a bcrypt hash: {e}"))?;
            return Ok(Hash::Bcrypt(text.to_string()));
        }
        let parts: Vec<&str> = text.split(':').collect();
        if let [iterations, salt, hash] = parts[..] {
            let iterations: u32 = iterations
                .parse()
                .map_err(|_| "a PBKDF2 iteration count that is not a number")?;
            if iterations < PBKDF2_MIN_ITERATIONS {
                return Err(format!(
                    "Minimum number of PBKDF2 iterations must be {PBKDF2_MIN_ITERATIONS}"
                ));
            }
            let (Some(salt), Some(hash)) = (unhex(salt), unhex(hash)) else {
                return Err("a PBKDF2 salt or hash that is not hex".into());
            };
            if hash.is_empty() {
                return Err("an empty PBKDF2 hash".into());
            }
            return Ok(Hash::Pbkdf2 {
                iterations: std::num::NonZeroU32::new(iterations)
                    .ok_or("zero PBKDF2 iterations")?,
                salt,
                hash,
            });
        }
        Err("Hashing algorithm of password cannot be determined".into())
    }

    fn matches(&self, password: &str) -> bool {
        match self {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => [
                ring::pbkdf2::PBKDF2_HMAC_SHA1,
                ring::pbkdf2::PBKDF2_HMAC_SHA256,
            ]
            .into_iter()
            .any(|alg| {
                ring::pbkdf2::verify(alg, *iterations, salt, password.as_bytes(), hash).is_ok()
            }),
        }
    }
}

/// A password file's users and hashes.
pub fn parse_password_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut users = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("line {}: not user:hash", n + 1));
        };
        if user.is_empty() {
            return Err(format!("line {}: no user", n + 1));
        }
        Hash::parse(hash).map_err(|e| format!("line {}: {e}", n + 1))?;
        if users.insert(user.to_string(), hash.to_string()).is_some() {
            return Err(format!("line {}: user {user} appears twice", n + 1));
        }
    }
    Ok(users)
}

struct Loaded {
    users: HashMap<String, Hash>,
    stamp: Option<common::tls::Stamp>,
    checked: Instant,
    /// (user, SHA-256 of the password) -> it matched.
    verified: HashMap<(String, [u8; 32]), bool>,
}

/// The password file in force.
pub struct PasswordFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

fn read(path: &Path) -> Result<HashMap<String, Hash>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let users = parse_password_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    users
        .into_iter()
        .map(|(u, h)| Hash::parse(&h).map(|h| (u, h)))
        .collect()
}

impl PasswordFile {
    pub fn load(path: &Path) -> Result<PasswordFile, String> {
        let users = read(path)?;
        Ok(PasswordFile {
            path: path.to_path_buf(),
            loaded: Mutex::new(Loaded {
                users,
                stamp: common::tls::stamp(path),
                checked: Instant::now(),
                verified: HashMap::new(),
            }),
        })
    }

    /// Whether `password` is `user`'s.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, password.as_bytes())
            .as_ref()
            .try_into()
            .unwrap_or([0; 32]);
        let key = (user.to_string(), digest);
        let hash = {
            let mut l = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            self.refresh(&mut l);
            if let Some(ok) = l.verified.get(&key) {
                return *ok;
            }
            l.users.get(user).cloned()
        };
        // Checked without the lock: bcrypt takes milliseconds.
        let ok = hash.is_some_and(|h| h.matches(password));
        let mut l = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if l.verified.len() >= CACHE_MAX {
            l.verified.clear();
        }
        l.verified.insert(key, ok);
        ok
    }

    fn refresh(&self, l: &mut Loaded) {
        if l.checked.elapsed() < REFRESH {
            return;
        }
        l.checked = Instant::now();
        let now = common::tls::stamp(&self.path);
        if now == l.stamp {
            return;
        }
        match read(&self.path) {
            Ok(users) => {
                tracing::info!(file = %self.path.display(), users = users.len(), "password file reloaded");
                l.users = users;
                l.verified.clear();
                l.stamp = now;
            }
            Err(e) => {
                tracing::warn!(error = %e, "password file not reloaded; the previous one stays in force")
            }
        }
    }
}

/// One impersonation rule.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    original_user: String,
    new_user: String,
    #[serde(default = "yes")]
    allow: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, serde::Deserialize)]
struct RawRules {
    #[serde(default)]
    impersonation: Vec<RawRule>,
}

#[derive(Debug, Clone)]
struct Rule {
    original_user: Regex,
    new_user: String,
    allow: bool,
}

/// Who may act as whom.
#[derive(Debug, Clone, Default)]
pub struct ImpersonationRules {
    rules: Vec<Rule>,
}

impl ImpersonationRules {
    pub fn parse(text: &str) -> Result<ImpersonationRules, String> {
        let raw: RawRules = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let rules = raw
            .impersonation
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let original_user = Regex::new(&format!("^(?:{})$", r.original_user))
                    .map_err(|e| format!("impersonation[{i}].original_user: {e}"))?;
                // Checked now, with its `$N` left as they are.
                Regex::new(&format!("^(?:{})$", r.new_user))
                    .map_err(|e| format!("impersonation[{i}].new_user: {e}"))?;
                Ok(Rule {
                    original_user,
                    new_user: r.new_user,
                    allow: r.allow,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(ImpersonationRules { rules })
    }

    /// Whether `original` may act as `new`.
    pub fn allows(&self, original: &str, new: &str) -> bool {
        if original == new {
            return true;
        }
        for r in &self.rules {
            let Some(caps) = r.original_user.captures(original) else {
                continue;
            };
            let mut pattern = String::new();
            caps.expand(&r.new_user, &mut pattern);
            let Ok(new_user) = Regex::new(&format!("^(?:{pattern})$")) else {
                continue;
            };
            if new_user.is_match(new) {
                return r.allow;
            }
        }
        false
    }
}

/// A key that JWTs must be signed with.
pub enum JwtKey {
    /// HS256: the shared secret.
    Hmac(ring::hmac::Key),
    /// RS256: the RSA public key (PKCS#1 DER).
    Rsa(Vec<u8>),
    /// ES256: the P-256 public point (uncompressed).
    Ec(Vec<u8>),
}

/// What a JWT claims, as far as authentication reads it.
#[derive(serde::Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
}

impl JwtKey {
    /// A PEM public key (RSA or P-256), else the file's text (trimmed) as
    /// an HMAC secret of at least 32 bytes.
    pub fn load(path: &Path) -> Result<JwtKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<JwtKey, String> {
        let text = text.trim();
        if let Some(body) = text
            .strip_prefix("-----BEGIN PUBLIC KEY-----")
            .and_then(|t| t.strip_suffix("-----END PUBLIC KEY-----"))
        {
            use base64::Engine;
            let der = base64::engine::general_purpose::STANDARD
                .decode(body.split_whitespace().collect::<String>())
                .map_err(|e| format!("not a PEM public key: {e}"))?;
            use x509_parser::prelude::FromDer;
            let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der)
                .map_err(|e| format!("not a public key: {e}"))?;
            let key = spki.subject_public_key.data.to_vec();
            return match spki.algorithm.algorithm.to_id_string().as_str() {
                "1.2.840.113549.1.1.1" => Ok(JwtKey::Rsa(key)),
                "1.2.840.10045.2.1" => Ok(JwtKey::Ec(key)),
                other => Err(format!(
                    "a public key of algorithm {other}: RSA or EC P-256 only"
                )),
            };
        }
        if text.starts_with("-----") {
            return Err("a PEM block other than PUBLIC KEY".into());
        }
        if text.len() < 32 {
            return Err("an HMAC secret of fewer than 32 bytes".into());
        }
        Ok(JwtKey::Hmac(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            text.as_bytes(),
        )))
    }

    fn alg(&self) -> &'static str {
        match self {
            JwtKey::Hmac(_) => "HS256",
            JwtKey::Rsa(_) => "RS256",
            JwtKey::Ec(_) => "ES256",
        }
    }

    /// The token's principal (`sub`), if its signature, algorithm and
    /// times hold at `now_s` (seconds since the epoch).
    pub fn verify(&self, token: &str, now_s: f64) -> Result<String, String> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a JWT".into());
        };
        #[derive(serde::Deserialize)]
        struct Header {
            alg: String,
        }
        let h: Header = b64
            .decode(header)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("a JWT header that is not base64url JSON")?;
        if h.alg != self.alg() {
            return Err(format!(
                "a JWT signed {}; this key takes {}",
                h.alg,
                self.alg()
            ));
        }
        let signed = &token[..header.len() + 1 + payload.len()];
        let signature = b64
            .decode(signature)
            .map_err(|_| "a JWT signature that is not base64url")?;
        let ok = match self {
            JwtKey::Hmac(k) => ring::hmac::verify(k, signed.as_bytes(), &signature).is_ok(),
            JwtKey::Rsa(k) => ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                k,
            )
            .verify(signed.as_bytes(), &signature)
            .is_ok(),
            JwtKey::Ec(k) => ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                k,
            )
            .verify(signed.as_bytes(), &signature)
            .is_ok(),
        };
        if !ok {
            return Err("a JWT whose signature does not verify".into());
        }
        let claims: Claims = b64
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("JWT claims that are not base64url JSON")?;
        if claims.exp.is_some_and(|exp| exp <= now_s) {
            return Err("an expired JWT".into());
        }
        if claims.nbf.is_some_and(|nbf| nbf > now_s) {
            return Err("a JWT not valid yet".into());
        }
        claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| "a JWT without a subject (sub)".into())
    }
}

/// A request's authenticated user (its password checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

/// How this coordinator authenticates its clients.
#[derive(Default)]
pub struct Authenticator {
    /// `None`: clients are not authenticated (any `X-Trino-User` is
    /// believed), and a password is refused, as Trino refuses it then.
    pub passwords: Option<PasswordFile>,
    /// `None`: bearer tokens are not taken.
    pub jwt: Option<JwtKey>,
    pub impersonation: ImpersonationRules,
}

fn unauthorized(message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::UNAUTHORIZED,
        [
            (axum::http::header::WWW_AUTHENTICATE, CHALLENGE),
            (
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            ),
        ],
        message.to_string(),
    )
        .into_response()
}

/// The client routes' authentication (an axum middleware): as Trino,
/// a password only over HTTPS, checked against the password file; the
/// user it names becomes the request's [`Principal`].
pub async fn authenticate(
    axum::extract::State(auth): axum::extract::State<std::sync::Arc<Authenticator>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let secure = request
        .extensions()
        .get::<axum::extract::ConnectInfo<common::listener::Peer>>()
        .is_some_and(|c| c.0.tls);
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(token) = header.as_deref().and_then(|h| h.strip_prefix("Bearer ")) {
        let Some(key) = &auth.jwt else {
            return unauthorized("Bearer tokens are not taken by this coordinator");
        };
        if !secure {
            return unauthorized("JWT not allowed for insecure authentication");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        return match key.verify(token.trim(), now) {
            Ok(user) => {
                request.extensions_mut().insert(Principal(user));
                next.run(request).await
            }
            Err(e) => unauthorized(&format!("Access Denied: {e}")),
        };
    }
    let credentials = header.as_deref().and_then(basic_credentials);
    let authenticates = auth.passwords.is_some() || auth.jwt.is_some();
    let (user, password) = match (&auth.passwords, credentials) {
        (_, None) if !authenticates => return next.run(request).await,
        (_, Some(_)) if !secure => {
            return unauthorized("Password not allowed for insecure authentication")
        }
        // No authentication configured: Trino's insecure authenticator.
        (None, Some(_)) if !authenticates => {
            return unauthorized("Password not allowed for insecure authentication")
        }
        // Tokens only: a password is no credential here.
        (None, Some(_)) | (_, None) => return unauthorized("Unauthorized"),
        (Some(_), Some(c)) => c,
    };
    // bcrypt is slow on purpose: off the async workers.
    let checked = {
        let (u, p) = (user.clone(), password);
        let auth = auth.clone();
        tokio::task::spawn_blocking(move || {
            auth.passwords.as_ref().is_some_and(|f| f.verify(&u, &p))
        })
        .await
        .unwrap_or(false)
    };
    if !checked {
        return unauthorized("Access Denied: Invalid credentials");
    }
    request.extensions_mut().insert(Principal(user));
    next.run(request).await
}

/// Trino's refusal of an impersonation.
pub fn impersonation_denied(original: &str, new: &str) -> String {
    format!("Access Denied: User {original} cannot impersonate user {new}")
}

/// An `Authorization: Basic` header's user and password.
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `alice:secret` with bcrypt cost 8, and `bob:hunter2` with PBKDF2
    /// (HMAC-SHA1, 1000 iterations), made by the tools Trino's docs name.
    fn file() -> String {
        let bcrypt = bcrypt::hash("secret", 8)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        let salt = b"saltsalt";
        let mut out = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA1,
            std::num::NonZeroU32::new(1000).unwrap(),
            salt,
            b"hunter2",
            &mut out,
        );
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        format!("alice:{bcrypt}\nbob:1000:{}:{}\n", hex(salt), hex(&out))
    }

    #[test]
    fn bcrypt_and_pbkdf2_passwords_are_checked_as_trino_checks_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password.db");
        std::fs::write(&path, file()).unwrap();
        let f = PasswordFile::load(&path).unwrap();
        assert!(f.verify("alice", "secret"));
        assert!(f.verify("alice", "secret"), "remembered");
        assert!(!f.verify("alice", "Secret"));
        assert!(f.verify("bob", "hunter2"));
        assert!(!f.verify("bob", "secret"));
        assert!(!f.verify("carol", "secret"), "no such user");
    }

    #[test]
    fn a_bad_password_file_is_refused_with_its_line() {
        for (text, want) in [
            ("alice", "line 1: not user:hash"),
            (
                "alice:$2y$04$abcdefghijklmnopqrstuuJ9sQCPgxHqvBtJ1IN3/6tUwYIcK5nAS",
                "Minimum cost of BCrypt password must be 8",
            ),
            (
                "bob:10:00:00",
                "Minimum number of PBKDF2 iterations must be 1000",
            ),
            ("bob:plaintext", "cannot be determined"),
            ("bob:1000:zz:00", "not hex"),
        ] {
            let e = parse_password_file(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn impersonation_follows_the_first_matching_rule() {
        let rules = ImpersonationRules::parse(
            r#"{"impersonation": [
                {"original_user": "admin", "new_user": "root", "allow": false},
                {"original_user": "admin", "new_user": ".*"},
                {"original_user": "(.*)-etl", "new_user": "$1"}
            ]}"#,
        )
        .unwrap();
        assert!(rules.allows("admin", "alice"));
        assert!(!rules.allows("admin", "root"), "the first match refuses");
        assert!(rules.allows("bob-etl", "bob"), "$1 from original_user");
        assert!(!rules.allows("bob-etl", "carol"));
        assert!(!rules.allows("alice", "bob"), "no rule: refused");
        assert!(rules.allows("alice", "alice"), "anyone may be themselves");
        assert!(ImpersonationRules::parse(
            r#"{"impersonation":[{"original_user":"(","new_user":"x"}]}"#
        )
        .is_err());
    }

    fn jwt(alg: &str, claims: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signed = format!(
            "{}.{}",
            b64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
            b64.encode(claims)
        );
        format!("{signed}.{}", b64.encode(sign(signed.as_bytes())))
    }

    #[test]
    fn a_jwt_is_taken_only_signed_by_the_key_in_time_and_naming_a_subject() {
        let secret = "a-shared-secret-of-at-least-32-bytes!";
        let key = JwtKey::parse(secret).unwrap();
        let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let hs = |claims: &str| {
            jwt("HS256", claims, |m| {
                ring::hmac::sign(&hmac, m).as_ref().to_vec()
            })
        };
        assert_eq!(
            key.verify(&hs(r#"{"sub":"alice","exp":2000}"#), 1000.0),
            Ok("alice".into())
        );
        assert!(key
            .verify(&hs(r#"{"sub":"alice","exp":900}"#), 1000.0)
            .unwrap_err()
            .contains("expired"));
        assert!(key
            .verify(&hs(r#"{"sub":"alice","nbf":1100}"#), 1000.0)
            .unwrap_err()
            .contains("not valid yet"));
        assert!(key
            .verify(&hs(r#"{"exp":2000}"#), 1000.0)
            .unwrap_err()
            .contains("subject"));
        let mut forged = hs(r#"{"sub":"alice"}"#);
        forged.replace_range(forged.len() - 3.., "AAA");
        assert!(key
            .verify(&forged, 1000.0)
            .unwrap_err()
            .contains("does not verify"));
        let none = jwt("none", r#"{"sub":"root"}"#, |_| Vec::new());
        assert!(key
            .verify(&none, 1000.0)
            .unwrap_err()
            .contains("signed none"));
        assert!(JwtKey::parse("short").is_err());

        // ES256 with a PEM public key, as Trino's jwt.key-file holds one.
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let mut spki = unhex("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(pair.public_key().as_ref());
        use base64::Engine;
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&spki)
        );
        let ec = JwtKey::parse(&pem).unwrap();
        let es = jwt("ES256", r#"{"sub":"bob"}"#, |m| {
            pair.sign(&rng, m).unwrap().as_ref().to_vec()
        });
        assert_eq!(ec.verify(&es, 1000.0), Ok("bob".into()));
        assert!(
            ec.verify(&hs(r#"{"sub":"bob"}"#), 1000.0).is_err(),
            "an HS256 token for an EC key"
        );
    }

    #[test]
    fn basic_credentials_are_read_from_the_header() {
        // "alice:pa:ss" (a password may hold a colon).
        assert_eq!(
            basic_credentials("Basic YWxpY2U6cGE6c3M="),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }
}
