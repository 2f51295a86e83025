//! Signing keys, and their rotation without logging anyone out.
//!
//! The user service signs with one key at a time, and its JWKS (`GET /api/v1/auth/jwks`)
//! publishes every key a verifier may need: the next one before it signs, and the previous ones
//! until every token they signed has expired.
//!
//! The keys come from one of:
//! - `JWT_PRIVATE_KEY` or `JWT_PRIVATE_KEY_PATH`: one key, for ever (no rotation);
//! - `JWT_KEY_DIR`: a directory of PEM files, each named by the UTC time at which it starts
//!   signing, `YYYYMMDDTHHMMSSZ.pem` (as `user-service keys rotate` names them), read again every
//!   `JWT_KEY_RELOAD_SECONDS` (10). Every replica may read the same directory.
//!
//! At any instant each key of the directory is, by its activation time ([`states`]):
//! - **pending**, activation in the future: published, not signing yet, so that every replica and
//!   every verifier holds it before the first token it signs;
//! - **current**, the latest activation not in the future: signs every new token;
//! - **previous**: published until its successor's activation plus the longest token lifetime
//!   (the refresh token's) and [`RETIREMENT_MARGIN`], when every token it signed has expired;
//! - **expired**: no longer published; `keys rotate` deletes it.
//!
//! An operator rotates with `user-service keys rotate [--activate-in SECONDS]` (`cargo xtask
//! keys rotate` locally): a new key, pending for [`DEFAULT_ACTIVATION_DELAY`] unless told
//! otherwise, which must outlast `JWT_KEY_RELOAD_SECONDS` plus the verifiers'
//! `JWKS_REFRESH_SECONDS` (60) for no verifier to meet a token before its key. `keys list` shows
//! every key's state; `keys remove KID` withdraws a key at once (a compromised one): its tokens are
//! refused within `JWT_KEY_RELOAD_SECONDS` + `JWKS_REFRESH_SECONDS` and one fetch. The key signing
//! now cannot be removed: rotate first (`--activate-in 0` in an emergency, when a few requests
//! refused during the switch cost less than a key in the wrong hands).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDateTime, Utc};
use common::auth::TokenVerifier;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use rsa::RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use tokio_util::sync::CancellationToken;

use crate::tokens::TokenIssuer;

/// Keys shorter than this are refused: RS256 with less than 2048 bits is breakable.
const MINIMUM_KEY_BITS: usize = 2048;

/// The size of the keys this service generates.
pub const GENERATED_KEY_BITS: usize = 2048;

/// How a key file's name gives the time the key starts signing (UTC, to the second).
const FILE_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// How long a new key waits before it signs, unless the operator says otherwise: more than the
/// default `JWT_KEY_RELOAD_SECONDS` (10) and `JWKS_REFRESH_SECONDS` (60) together.
pub const DEFAULT_ACTIVATION_DELAY: Duration = Duration::from_secs(120);

/// How much longer than its last token's lifetime a retired key stays published: the verifiers'
/// clock leeway, and clocks of replicas that differ by a little.
pub const RETIREMENT_MARGIN: Duration = Duration::from_secs(60);

/// One private key, the public half it publishes, and when it starts signing.
pub struct SigningKey {
    /// The JWK thumbprint (RFC 7638) of the public key: the tokens' `kid`.
    pub key_id: String,
    pub activation: DateTime<Utc>,
    /// The file it was read from, when it came from a key directory.
    pub file: Option<PathBuf>,
    encoding_key: EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    /// A key from an RSA private key in PKCS#8 or PKCS#1 PEM, signing from `activation`.
    pub fn from_pem(pem: &str, activation: DateTime<Utc>) -> anyhow::Result<Self> {
        let private_key = parse_private_key_pem(pem)?;
        anyhow::ensure!(
            private_key.size() * 8 >= MINIMUM_KEY_BITS,
            "the token signing key has {} bits; at least {MINIMUM_KEY_BITS} are required",
            private_key.size() * 8
        );
        // Hand jsonwebtoken the DER we derived ourselves: its own PEM reader would also accept a
        // public key here and only fail at the first signature.
        let der = private_key.to_pkcs1_der().context("failed to encode the signing key as PKCS#1 DER")?;
        let encoding_key = EncodingKey::from_rsa_der(der.as_bytes());
        let mut jwk = Jwk::from_encoding_key(&encoding_key, Algorithm::RS256).context("failed to derive the public JWK")?;
        let key_id = jwk.thumbprint(ThumbprintHash::SHA256).context("failed to compute the JWK thumbprint")?;
        jwk.common.key_id = Some(key_id.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { key_id, activation, file: None, encoding_key, jwk })
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding_key
    }
}

fn parse_private_key_pem(pem: &str) -> anyhow::Result<RsaPrivateKey> {
    let pem = pem.trim();
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        RsaPrivateKey::from_pkcs1_pem(pem).context("the token signing key is not a valid PKCS#1 RSA private key PEM")
    } else {
        RsaPrivateKey::from_pkcs8_pem(pem).context("the token signing key is not a valid PKCS#8 RSA private key PEM")
    }
}

/// Where a key stands at one instant (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Pending,
    Current,
    Previous { published_until: DateTime<Utc> },
    Expired,
}

impl KeyState {
    pub fn is_published(self) -> bool {
        self != KeyState::Expired
    }
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyState::Pending => formatter.write_str("pending"),
            KeyState::Current => formatter.write_str("current"),
            KeyState::Previous { published_until } => {
                write!(
                    formatter,
                    "previous, published until {}",
                    published_until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            }
            KeyState::Expired => formatter.write_str("expired"),
        }
    }
}

/// Each key's state at `now`, for keys whose activation times are `activations` in ascending
/// order, when no token lives longer than `token_lifetime`.
pub fn states(activations: &[DateTime<Utc>], now: DateTime<Utc>, token_lifetime: Duration) -> Vec<KeyState> {
    let kept = chrono::Duration::from_std(token_lifetime + RETIREMENT_MARGIN).unwrap_or(chrono::Duration::MAX);
    let current = activations.iter().rposition(|activation| *activation <= now);
    activations
        .iter()
        .enumerate()
        .map(|(index, activation)| {
            if *activation > now {
                KeyState::Pending
            } else if Some(index) == current {
                KeyState::Current
            } else {
                // Retired when the next key began signing; its last token expires a lifetime on.
                let published_until = activations[index + 1].checked_add_signed(kept).unwrap_or(DateTime::<Utc>::MAX_UTC);
                if published_until > now { KeyState::Previous { published_until } } else { KeyState::Expired }
            }
        })
        .collect()
}

/// The keys the service knows, by activation time.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<Arc<SigningKey>>,
}

impl KeyRing {
    pub fn new(mut keys: Vec<SigningKey>) -> Self {
        keys.sort_by_key(|key| key.activation);
        Self { keys: keys.into_iter().map(Arc::new).collect() }
    }

    /// Every key with its state at `now`.
    pub fn states(&self, now: DateTime<Utc>, token_lifetime: Duration) -> Vec<(Arc<SigningKey>, KeyState)> {
        let activations: Vec<_> = self.keys.iter().map(|key| key.activation).collect();
        self.keys.iter().cloned().zip(states(&activations, now, token_lifetime)).collect()
    }

    /// The key that signs at `now`, if any key does yet.
    pub fn signing_key(&self, now: DateTime<Utc>) -> Option<Arc<SigningKey>> {
        self.keys.iter().rev().find(|key| key.activation <= now).cloned()
    }

    /// What the JWKS publishes at `now`: every key not expired.
    pub fn key_set(&self, now: DateTime<Utc>, token_lifetime: Duration) -> JwkSet {
        let keys = self.states(now, token_lifetime).into_iter().filter(|(_, state)| state.is_published());
        JwkSet { keys: keys.map(|(key, _)| key.jwk.clone()).collect() }
    }

    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|key| key.key_id.clone()).collect()
    }
}

/// The name of the key file that starts signing at `activation`.
pub fn file_name(activation: DateTime<Utc>) -> String {
    format!("{}.pem", activation.format(FILE_TIME_FORMAT))
}

/// The activation time a key file's name gives, if it is named as [`file_name`] names it.
fn activation_of(path: &Path) -> Option<DateTime<Utc>> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".pem")?;
    NaiveDateTime::parse_from_str(stem, FILE_TIME_FORMAT).ok().map(|naive| naive.and_utc())
}

/// Every key of `directory`: each `*.pem` file, which must be named by its activation time.
/// Other files are ignored (a Kubernetes secret volume's `..data`, say).
pub fn read_directory(directory: &Path) -> anyhow::Result<KeyRing> {
    let entries =
        std::fs::read_dir(directory).with_context(|| format!("failed to read the key directory {}", directory.display()))?;
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("failed to read the key directory {}", directory.display()))?.path();
        if path.extension().is_none_or(|extension| extension != "pem") || !path.is_file() {
            continue;
        }
        let Some(activation) = activation_of(&path) else {
            bail!(
                "{} is not named by the time it starts signing (YYYYMMDDTHHMMSSZ.pem, UTC, as `user-service keys rotate` names keys)",
                path.display()
            );
        };
        let pem = std::fs::read_to_string(&path).with_context(|| format!("failed to read the signing key {}", path.display()))?;
        let mut key = SigningKey::from_pem(&pem, activation).with_context(|| format!("in {}", path.display()))?;
        key.file = Some(path);
        keys.push(key);
    }
    Ok(KeyRing::new(keys))
}

/// The keys of `directory` (created if missing) at start-up. With no key signing yet (a new
/// directory), a key that signs from now is generated and written there, as a single key file is
/// in development; it is logged as a warning.
pub async fn open_directory(directory: &Path) -> anyhow::Result<KeyRing> {
    tokio::fs::create_dir_all(directory)
        .await
        .with_context(|| format!("failed to create the key directory {}", directory.display()))?;
    let owned = directory.to_owned();
    let ring =
        tokio::task::spawn_blocking(move || read_directory(&owned)).await.context("reading the key directory panicked")??;
    if ring.signing_key(Utc::now()).is_some() {
        return Ok(ring);
    }
    let now = Utc::now();
    let path = directory.join(file_name(now));
    let pem = crate::tokens::generate_private_key_pem(GENERATED_KEY_BITS).await?;
    match write_new_key_file(&path, &pem).await {
        Ok(()) => {
            tracing::warn!(path = %path.display(), "no key in the key directory signs yet: generated one that signs from now")
        }
        // Another replica starting at the same second wrote it: use theirs.
        Err(error) if already_exists(&error) => {}
        Err(error) => return Err(error),
    }
    let owned = directory.to_owned();
    tokio::task::spawn_blocking(move || read_directory(&owned)).await.context("reading the key directory panicked")?
}

/// Whether [`write_new_key_file`] failed because the file was there already.
pub fn already_exists(error: &anyhow::Error) -> bool {
    error.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::AlreadyExists)
}

/// Writes `pem` to a new file at `path` (never over an existing one), readable by its owner
/// only, its parent directories created, synced to disk.
pub async fn write_new_key_file(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    use tokio::io::AsyncWriteExt as _;

    if let Some(directory) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(directory)
            .await
            .with_context(|| format!("failed to create the key directory {}", directory.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    let mut file = match tokio::fs::OpenOptions::from(options).open(path).await {
        Ok(file) => file,
        Err(error) => return Err(anyhow::Error::new(error).context(format!("failed to create {}", path.display()))),
    };
    file.write_all(pem.as_bytes()).await.with_context(|| format!("failed to write {}", path.display()))?;
    file.sync_all().await.with_context(|| format!("failed to sync {}", path.display()))?;
    Ok(())
}

/// Reads `directory` again every `every` until `cancel`: new keys, removed ones and the passing
/// of time reach both what `tokens` signs and publishes and what `verifier` accepts. A directory
/// that cannot be read, or holds no key that signs now, is logged and the keys loaded before stay.
pub async fn follow_directory(
    directory: PathBuf,
    every: Duration,
    tokens: Arc<TokenIssuer>,
    verifier: Arc<TokenVerifier>,
    cancel: CancellationToken,
) {
    let mut known = tokens.key_ids();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let owned = directory.clone();
        match tokio::task::spawn_blocking(move || read_directory(&owned)).await {
            Ok(Ok(ring)) if ring.signing_key(Utc::now()).is_some() => {
                let key_ids = ring.key_ids();
                if key_ids != known {
                    tracing::info!(keys = ?key_ids, directory = %directory.display(), "signing keys reloaded");
                    known = key_ids;
                }
                tokens.replace_keys(ring);
            }
            Ok(Ok(_)) => tracing::warn!(
                directory = %directory.display(),
                "no key in the key directory signs now; the keys loaded before stay in use"
            ),
            Ok(Err(error)) => tracing::warn!(
                error = format!("{error:#}"),
                "failed to reload the signing keys; the keys loaded before stay in use"
            ),
            Err(error) => tracing::warn!(%error, "reloading the signing keys panicked"),
        }
        if let Err(error) = verifier.replace_keys(&tokens.key_set()) {
            tracing::warn!(error = format!("{error:#}"), "failed to hand the reloaded keys to the verifier");
        }
    }
}

/// An operator's command on the key directory: `user-service keys rotate|list|remove`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysCommand {
    /// A new key, signing after `activate_in`; expired keys deleted.
    Rotate {
        activate_in: Duration,
    },
    List,
    /// Withdraws the key with this `kid` now.
    Remove(String),
}

impl KeysCommand {
    /// From the arguments after `keys`.
    pub fn parse(arguments: &[String]) -> anyhow::Result<Self> {
        let usage = "usage: user-service keys rotate [--activate-in SECONDS] | keys list | keys remove KID";
        match arguments {
            [verb] if verb == "rotate" => Ok(Self::Rotate { activate_in: DEFAULT_ACTIVATION_DELAY }),
            [verb, flag, seconds] if verb == "rotate" && flag == "--activate-in" => {
                let seconds: u64 =
                    seconds.parse().with_context(|| format!("--activate-in {seconds:?} is not a number of seconds; {usage}"))?;
                Ok(Self::Rotate { activate_in: Duration::from_secs(seconds) })
            }
            [verb] if verb == "list" => Ok(Self::List),
            [verb, key_id] if verb == "remove" => Ok(Self::Remove(key_id.clone())),
            _ => bail!("{usage}"),
        }
    }
}

/// Runs `command` on the key directory `directory` for tokens living at most `token_lifetime`;
/// returns what to tell the operator.
pub async fn run(directory: &Path, token_lifetime: Duration, command: &KeysCommand) -> anyhow::Result<String> {
    match command {
        KeysCommand::Rotate { activate_in } => rotate(directory, *activate_in, token_lifetime).await,
        KeysCommand::List => {
            let ring = read_directory(directory)?;
            let lines: Vec<String> = ring
                .states(Utc::now(), token_lifetime)
                .iter()
                .map(|(key, state)| format!("{}  {}  {state}", key.key_id, display_file(key)))
                .collect();
            Ok(if lines.is_empty() { format!("no keys in {}", directory.display()) } else { lines.join("\n") })
        }
        KeysCommand::Remove(key_id) => {
            let ring = read_directory(directory)?;
            let states = ring.states(Utc::now(), token_lifetime);
            let Some((key, state)) = states.iter().find(|(key, _)| key.key_id == *key_id) else {
                bail!("no key in {} has the id {key_id:?} (see `keys list`)", directory.display());
            };
            if *state == KeyState::Current {
                bail!("{key_id} signs now: rotate first (`keys rotate --activate-in 0` in an emergency), then remove it");
            }
            let path = key.file.as_deref().context("a key of a directory has a file")?;
            std::fs::remove_file(path).with_context(|| format!("failed to remove {}", path.display()))?;
            tracing::info!(key_id = %key_id, path = %path.display(), "signing key removed by an operator");
            Ok(format!(
                "removed {key_id} ({}); its tokens are refused once the service reloads its keys (JWT_KEY_RELOAD_SECONDS) and the verifiers refresh theirs (JWKS_REFRESH_SECONDS)",
                path.display()
            ))
        }
    }
}

fn display_file(key: &SigningKey) -> String {
    key.file.as_deref().and_then(Path::file_name).map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A new key in `directory` that signs `activate_in` from now (rounded up to the second its file
/// name can say), then every expired key deleted.
async fn rotate(directory: &Path, activate_in: Duration, token_lifetime: Duration) -> anyhow::Result<String> {
    let earliest = Utc::now() + chrono::Duration::from_std(activate_in).context("--activate-in is too long")?;
    let seconds = earliest.timestamp() + i64::from(earliest.timestamp_subsec_nanos() > 0);
    let activation = DateTime::from_timestamp(seconds, 0).context("the activation time is out of range")?;
    let path = directory.join(file_name(activation));
    let pem = crate::tokens::generate_private_key_pem(GENERATED_KEY_BITS).await?;
    write_new_key_file(&path, &pem).await?;
    let key_id = SigningKey::from_pem(&pem, activation)?.key_id;
    tracing::info!(key_id = %key_id, path = %path.display(), %activation, "new signing key made by an operator");

    let mut removed = Vec::new();
    for (key, state) in read_directory(directory)?.states(Utc::now(), token_lifetime) {
        if let (KeyState::Expired, Some(file)) = (state, key.file.as_deref()) {
            std::fs::remove_file(file).with_context(|| format!("failed to remove the expired key {}", file.display()))?;
            removed.push(display_file(&key));
        }
    }
    let activation = activation.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let removed = if removed.is_empty() { String::new() } else { format!("; expired keys removed: {}", removed.join(", ")) };
    Ok(format!(
        "new key {key_id} ({}) signs from {activation}; the keys before it stay published until their tokens expire{removed}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_key_is_pending_then_current_then_published_for_a_token_lifetime_after_its_successor_signs() {
        let activations = [at("2026-01-01T00:00:00Z"), at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z")];
        let margin = chrono::Duration::from_std(RETIREMENT_MARGIN).unwrap();
        // Before the second key signs: the first signs, the others wait, published.
        assert_eq!(
            states(&activations, at("2026-01-15T00:00:00Z"), HOUR),
            [KeyState::Current, KeyState::Pending, KeyState::Pending]
        );
        // The second signs from its activation to the second; the first stays published for a
        // token lifetime and the margin after that, then expires.
        let first_until = at("2026-02-01T01:00:00Z") + margin;
        assert_eq!(
            states(&activations, at("2026-02-01T00:00:00Z"), HOUR),
            [KeyState::Previous { published_until: first_until }, KeyState::Current, KeyState::Pending]
        );
        assert_eq!(
            states(&activations, first_until - chrono::Duration::seconds(1), HOUR)[0],
            KeyState::Previous { published_until: first_until }
        );
        assert_eq!(states(&activations, first_until, HOUR)[0], KeyState::Expired);
        // Once the third signs, the second is retired from the third's activation, not its own.
        let second_until = at("2026-03-01T01:00:00Z") + margin;
        assert_eq!(
            states(&activations, at("2026-03-01T00:30:00Z"), HOUR),
            [KeyState::Expired, KeyState::Previous { published_until: second_until }, KeyState::Current]
        );
        // Nothing active yet: everything pending.
        assert_eq!(states(&activations, at("2025-12-31T23:59:59Z"), HOUR), [KeyState::Pending; 3]);
    }

    #[test]
    fn each_state_reads_as_keys_list_prints_it() {
        assert_eq!(KeyState::Pending.to_string(), "pending");
        assert_eq!(KeyState::Current.to_string(), "current");
        let published_until = at("2026-02-01T01:01:00Z");
        assert_eq!(KeyState::Previous { published_until }.to_string(), "previous, published until 2026-02-01T01:01:00Z");
        assert_eq!(KeyState::Expired.to_string(), "expired");
    }

    #[tokio::test]
    async fn the_key_set_publishes_pending_current_and_previous_keys_and_never_an_expired_one() {
        let mut keys = Vec::new();
        for activation in ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"] {
            let pem = crate::tokens::generate_private_key_pem(GENERATED_KEY_BITS).await.unwrap();
            keys.push(SigningKey::from_pem(&pem, at(activation)).unwrap());
        }
        let ids: Vec<String> = keys.iter().map(|key| key.key_id.clone()).collect();
        // Given out of order: the ring sorts them by activation.
        keys.reverse();
        let ring = KeyRing::new(keys);
        assert_eq!(ring.key_ids(), ids);

        // Mid-March: the first expired (a month after its successor began), the second previous,
        // the third signing, the fourth pending.
        let now = at("2026-03-01T00:30:00Z");
        let published: Vec<String> = ring.key_set(now, HOUR).keys.iter().map(|jwk| jwk.common.key_id.clone().unwrap()).collect();
        assert_eq!(published, ids[1..]);
        assert_eq!(ring.signing_key(now).unwrap().key_id, ids[2]);
        // Before any key signs, none is chosen to sign, and all are published.
        assert!(ring.signing_key(at("2025-12-31T00:00:00Z")).is_none());
        assert_eq!(ring.key_set(at("2025-12-31T00:00:00Z"), HOUR).keys.len(), 4);
    }

    #[test]
    fn key_files_are_named_by_their_activation_to_the_second_and_read_back() {
        let activation = at("2026-12-07T15:48:16Z");
        let name = file_name(activation);
        assert_eq!(name, "20261207T154816Z.pem");
        assert_eq!(activation_of(Path::new(&format!("/keys/{name}"))), Some(activation));
        for wrong in ["/keys/current.pem", "/keys/20261207T154816Z.key", "/keys/2026-12-07.pem", "/keys/20261207T154816.pem"] {
            assert_eq!(activation_of(Path::new(wrong)), None, "{wrong}");
        }
    }

    #[test]
    fn the_commands_parse_and_anything_else_is_refused_with_the_usage() {
        let parse = |text: &str| KeysCommand::parse(&text.split_whitespace().map(str::to_owned).collect::<Vec<_>>());
        assert_eq!(parse("rotate").unwrap(), KeysCommand::Rotate { activate_in: DEFAULT_ACTIVATION_DELAY });
        assert_eq!(parse("rotate --activate-in 0").unwrap(), KeysCommand::Rotate { activate_in: Duration::ZERO });
        assert_eq!(parse("list").unwrap(), KeysCommand::List);
        assert_eq!(parse("remove abc").unwrap(), KeysCommand::Remove("abc".into()));
        for wrong in [
            "",
            "rotate now",
            "rotate --activate-in soon",
            "rotate --after 30",
            "remove abc 30",
            "remove",
            "list all",
            "revoke abc",
        ] {
            let error = format!("{:#}", parse(wrong).unwrap_err());
            assert!(error.contains("usage: user-service keys"), "{wrong:?}: {error}");
        }
    }

    #[tokio::test]
    async fn a_rotation_publishes_the_new_key_before_it_signs_and_the_current_key_cannot_be_removed() {
        let directory = std::env::temp_dir().join(format!("user-service-keys-{}", uuid::Uuid::new_v4().simple()));
        let first = open_directory(&directory).await.unwrap();
        let first_key = first.signing_key(Utc::now()).unwrap().key_id.clone();
        assert_eq!(first.key_ids(), std::slice::from_ref(&first_key), "a new directory gets one key that signs now");

        let before = Utc::now();
        let said = run(&directory, HOUR, &KeysCommand::Rotate { activate_in: HOUR }).await.unwrap();
        let after = Utc::now();
        let ring = read_directory(&directory).unwrap();
        // It signs an hour on, rounded up to the whole second its file name can say.
        let activation = ring.states(Utc::now(), HOUR)[1].0.activation;
        let hour = chrono::Duration::from_std(HOUR).unwrap();
        assert!(activation >= before + hour && activation <= after + hour + chrono::Duration::seconds(1), "{activation}");
        assert_eq!(activation.timestamp_subsec_nanos(), 0);
        let list = run(&directory, HOUR, &KeysCommand::List).await.unwrap();
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(lines.len(), 2, "{list}");
        assert!(lines[0].ends_with("  current") && lines[1].ends_with(&format!("{}  pending", file_name(activation))), "{list}");
        assert_eq!(ring.key_ids().len(), 2, "{said}");
        let second_key = ring.key_ids()[1].clone();
        assert!(said.starts_with(&format!("new key {second_key} (")), "{said}");
        // Pending: published, not signing.
        assert_eq!(ring.signing_key(Utc::now()).unwrap().key_id, first_key);
        let published: Vec<_> =
            ring.key_set(Utc::now(), HOUR).keys.iter().map(|jwk| jwk.common.key_id.clone().unwrap()).collect();
        assert_eq!(published, [first_key.clone(), second_key.clone()]);

        let refused = run(&directory, HOUR, &KeysCommand::Remove(first_key.clone())).await.unwrap_err().to_string();
        assert!(refused.contains("signs now: rotate first"), "{refused}");
        let unknown = run(&directory, HOUR, &KeysCommand::Remove("nope".into())).await.unwrap_err().to_string();
        assert!(unknown.contains("no key in"), "{unknown}");
        // The pending key can be withdrawn.
        run(&directory, HOUR, &KeysCommand::Remove(second_key)).await.unwrap();
        assert_eq!(read_directory(&directory).unwrap().key_ids(), [first_key]);
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn a_pem_file_not_named_by_its_activation_stops_the_read_naming_it() {
        let directory = std::env::temp_dir().join(format!("user-service-keys-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::write(directory.join("README"), "ignored").unwrap();
        assert!(read_directory(&directory).unwrap().key_ids().is_empty());
        std::fs::write(directory.join("current.pem"), "x").unwrap();
        let error = read_directory(&directory).err().unwrap().to_string();
        assert!(error.contains("current.pem is not named by the time it starts signing"), "{error}");
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
