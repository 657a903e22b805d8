//! Registry credentials: where they come from and the `WWW-Authenticate` challenges that ask
//! for them.
//!
//! Sources, first match wins: `--creds USER:PASS`, then `$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.docker/config.json`. In an auth file a
//! host's entry is `auths.<key>.auth` (base64 `user:pass`), or a credential helper named by
//! `credHelpers.<host>` / `credsStore`, run as `docker-credential-<name> get` with the host
//! on stdin. Keys may be `host`, `host/ns[/repo]` (containers' per-repository entries, the
//! most specific wins) or a URL such as `https://index.docker.io/v1/`.
//!
//! A [`Credentials`]'s secret never reaches `Debug`, `Display`, logs or errors: only the
//! user name and where the credentials came from are ever shown.

use std::fmt;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use base64::Engine as _;

use crate::oci::reference::ImageReference;

/// A user name and secret, with where they came from (for messages).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    secret: String,
    pub origin: String,
}

impl Credentials {
    pub fn new(username: &str, secret: &str, origin: &str) -> Credentials {
        Credentials {
            username: username.to_string(),
            secret: secret.to_string(),
            origin: origin.to_string(),
        }
    }

    /// Parses `--creds USER:PASS`.
    pub fn parse_flag(s: &str) -> Result<Credentials> {
        match s.split_once(':') {
            Some((user, pass)) if !user.is_empty() => Ok(Credentials::new(user, pass, "--creds")),
            _ => bail!("--creds wants USER:PASSWORD (the user name must not be empty)"),
        }
    }

    /// The secret, for the one place that puts it on the wire.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

/// The clap parser of `--creds`: unlike a plain function parser, its errors never echo the
/// value (which holds a password).
#[derive(Clone, Copy, Debug, Default)]
pub struct CredsParser;

impl clap::builder::TypedValueParser for CredsParser {
    type Value = Credentials;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Credentials, clap::Error> {
        let fail = |msg: String| {
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("{msg}\n")).with_cmd(cmd)
        };
        let s = value
            .to_str()
            .ok_or_else(|| fail("--creds is not valid UTF-8".to_string()))?;
        Credentials::parse_flag(s).map_err(|e| fail(e.to_string()))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials({} from {}, secret redacted)",
            self.username, self.origin
        )
    }
}

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses one `WWW-Authenticate` value (`Basic realm="…"` or
/// `Bearer realm="…",service="…",scope="…"`); `None` for schemes this tool does not speak.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    for (key, val) in parse_params(params) {
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(val),
            "service" => service = Some(val),
            "scope" => scope = Some(val),
            _ => {}
        }
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
        scope,
    })
}

/// `k="v", k2=v2` pairs; quoted values may contain commas (scopes do: `pull,push`).
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => val.push(c),
                }
            }
            (val, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((key, val));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// An auth file's entry for `reference`, or the helper to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFileEntry {
    /// `user:pass`, decoded.
    Basic { username: String, secret: String },
    /// `docker-credential-<name>`, asked for `host`.
    Helper { name: String, host: String },
}

/// The keys an auth file may use for `reference`, most specific first.
fn candidate_keys(reference: &ImageReference) -> Vec<String> {
    let mut keys = Vec::new();
    let mut path = format!("{}/{}", reference.registry, reference.repository);
    loop {
        keys.push(path.clone());
        match path.rsplit_once('/') {
            Some((parent, _)) => path = parent.to_string(),
            None => break,
        }
    }
    if reference.api_host() != reference.registry {
        keys.push(reference.api_host().to_string());
    }
    if reference.registry == crate::oci::reference::DOCKER_HUB {
        keys.push("index.docker.io".to_string());
    }
    keys
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `host/ns` stays.
fn normalise_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key.strip_suffix("/v1/").unwrap_or(key);
    let key = key.strip_suffix("/v2/").unwrap_or(key);
    key.trim_end_matches('/').to_string()
}

/// Finds `reference` in one auth file's JSON (containers `auth.json` or Docker `config.json`).
pub fn lookup_auth_file(json: &[u8], reference: &ImageReference) -> Result<Option<AuthFileEntry>> {
    let doc: serde_json::Value =
        serde_json::from_slice(json).context("the auth file is not valid JSON")?;
    let keys = candidate_keys(reference);
    let host = reference.registry.clone();
    if let Some(helpers) = doc.get("credHelpers").and_then(|h| h.as_object()) {
        for key in &keys {
            for (k, v) in helpers {
                if normalise_key(k) == *key
                    && let Some(name) = v.as_str()
                {
                    return Ok(Some(AuthFileEntry::Helper {
                        name: name.to_string(),
                        host: k.clone(),
                    }));
                }
            }
        }
    }
    if let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) {
        for key in &keys {
            for (k, v) in auths {
                if normalise_key(k) != *key {
                    continue;
                }
                let Some(encoded) = v.get("auth").and_then(|a| a.as_str()) else {
                    continue;
                };
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .with_context(|| format!("auths.{k}.auth is not base64"))?;
                let decoded = String::from_utf8(decoded)
                    .with_context(|| format!("auths.{k}.auth is not UTF-8"))?;
                let Some((user, pass)) = decoded.split_once(':') else {
                    bail!("auths.{k}.auth is not base64 of USER:PASSWORD");
                };
                return Ok(Some(AuthFileEntry::Basic {
                    username: user.to_string(),
                    secret: pass.to_string(),
                }));
            }
        }
    }
    if let Some(name) = doc.get("credsStore").and_then(|s| s.as_str()) {
        // Docker stores Docker Hub's credentials under its v1 index URL.
        let host = if host == crate::oci::reference::DOCKER_HUB {
            "https://index.docker.io/v1/".to_string()
        } else {
            host
        };
        return Ok(Some(AuthFileEntry::Helper {
            name: name.to_string(),
            host,
        }));
    }
    Ok(None)
}

/// The auth files to read, in order, from the environment given as values.
pub fn auth_file_candidates(
    registry_auth_file: Option<PathBuf>,
    xdg_runtime_dir: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(f) = registry_auth_file {
        out.push(f);
    }
    if let Some(d) = xdg_runtime_dir {
        out.push(d.join("containers").join("auth.json"));
    }
    if let Some(h) = home {
        out.push(h.join(".docker").join("config.json"));
    }
    out
}

/// Credentials for `reference` from the environment's auth files; `None` means anonymous.
pub fn find_credentials(reference: &ImageReference) -> Result<Option<Credentials>> {
    let files = auth_file_candidates(
        std::env::var_os("REGISTRY_AUTH_FILE").map(PathBuf::from),
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    );
    for file in files {
        let bytes = match fs_err::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let entry = lookup_auth_file(&bytes, reference)
            .with_context(|| format!("reading the auth file {}", file.display()))?;
        let origin = file.display().to_string();
        match entry {
            None => continue,
            Some(AuthFileEntry::Basic { username, secret }) => {
                return Ok(Some(Credentials::new(&username, &secret, &origin)));
            }
            Some(AuthFileEntry::Helper { name, host }) => {
                let creds = run_helper(&name, &host).with_context(|| {
                    format!("asking docker-credential-{name} (named in {origin})")
                })?;
                return Ok(creds);
            }
        }
    }
    Ok(None)
}

/// Runs `docker-credential-NAME get` with `host` on stdin.
fn run_helper(name: &str, host: &str) -> Result<Option<Credentials>> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        bail!("`{name}` is not a credential helper name");
    }
    let program = format!("docker-credential-{name}");
    let spawned = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        // A config.json copied from a desktop often names a store this host lacks
        // (`desktop`, `osxkeychain`): the registry may not need credentials at all.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!("{program} is not installed; pulling without credentials");
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("running {program}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(host.as_bytes())
            .with_context(|| format!("writing to {program}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        // Helpers say "credentials not found in native keychain" for unknown hosts; stderr and
        // stdout are not shown further in case a helper echoes a secret.
        tracing::debug!("{program} get {host} failed ({})", out.status);
        return Ok(None);
    }
    parse_helper_output(&out.stdout, &program).map(Some)
}

/// Parses a credential helper's `{"Username": …, "Secret": …}`.
pub fn parse_helper_output(stdout: &[u8], origin: &str) -> Result<Credentials> {
    #[derive(serde::Deserialize)]
    struct Out {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    // serde's message could quote the input, which holds the secret: say only what was wrong.
    let out: Out = serde_json::from_slice(stdout).map_err(|_| {
        anyhow::anyhow!("{origin} printed something other than {{Username, Secret}}")
    })?;
    Ok(Credentials::new(&out.username, &out.secret, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(s: &str) -> ImageReference {
        ImageReference::parse(s).unwrap()
    }

    #[test]
    fn challenges_are_parsed_with_quoted_commas() {
        assert_eq!(parse_challenge("Basic realm=\"r\""), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"https://auth.io/token\",service=\"reg.io\",scope=\"repository:a/b:pull,push\""
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.io/token".into(),
                service: Some("reg.io".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None, "no realm");
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn auth_files_pick_the_most_specific_entry() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let json = format!(
            r#"{{"auths":{{"reg.io":{{"auth":"{}"}},"reg.io/team/app":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
            b64("host:h"),
            b64("repo:r"),
            b64("hub:x")
        );
        let get = |r: &str| lookup_auth_file(json.as_bytes(), &reference(r)).unwrap();
        assert_eq!(
            get("reg.io/team/app:1"),
            Some(AuthFileEntry::Basic {
                username: "repo".into(),
                secret: "r".into()
            })
        );
        assert_eq!(
            get("reg.io/team/other"),
            Some(AuthFileEntry::Basic {
                username: "host".into(),
                secret: "h".into()
            })
        );
        assert_eq!(
            get("debian:12"),
            Some(AuthFileEntry::Basic {
                username: "hub".into(),
                secret: "x".into()
            })
        );
        assert_eq!(get("elsewhere.io/a"), None);
    }

    #[test]
    fn helpers_are_found_per_host_or_as_the_store() {
        let json = br#"{"credHelpers":{"reg.io":"pass"},"credsStore":"secretservice"}"#;
        assert_eq!(
            lookup_auth_file(json, &reference("reg.io/a")).unwrap(),
            Some(AuthFileEntry::Helper {
                name: "pass".into(),
                host: "reg.io".into()
            })
        );
        assert_eq!(
            lookup_auth_file(json, &reference("other.io/a")).unwrap(),
            Some(AuthFileEntry::Helper {
                name: "secretservice".into(),
                host: "other.io".into()
            })
        );
        assert_eq!(
            lookup_auth_file(json, &reference("debian:12")).unwrap(),
            Some(AuthFileEntry::Helper {
                name: "secretservice".into(),
                host: "https://index.docker.io/v1/".into()
            })
        );
    }

    #[test]
    fn secrets_never_show() {
        let c = Credentials::parse_flag("me:s3cret:with:colons").unwrap();
        assert_eq!(c.secret(), "s3cret:with:colons");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(Credentials::parse_flag("nouser").is_err());
        let err = parse_helper_output(b"{\"Secret\":\"s3cret\"}", "helper").unwrap_err();
        assert!(!format!("{err:#}").contains("s3cret"));
    }
}
