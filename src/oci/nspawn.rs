//! Application images (no init system inside) are run, not booted: for them a `NAME.nspawn`
//! `[Exec]` section with `Boot=no` and the config's entrypoint and command as `Parameters=`,
//! so that `machinectl start NAME` runs the container's process. Images with systemd boot as
//! usual and get nothing from here.
//!
//! Quoting follows what systemd (252 and later) does with these settings: `Parameters=` and
//! `Environment=` are split into words with quotes removed and backslashes kept literally
//! (`extract_first_word(EXTRACT_UNQUOTE|EXTRACT_RETAIN_ESCAPE)`), so a word is wrapped in
//! single quotes when it needs to be, a `'` inside is written as `"'"` (adjacent quoted parts
//! join into one word), and a line never ends in a backslash (that would continue it). Values
//! systemd cannot hold — newlines and other control characters, which would end or corrupt the
//! line — are refused rather than altered. `WorkingDirectory=` and `User=` take the rest of the
//! line verbatim (no unquoting), so they are checked instead of quoted. `.nspawn` files expand
//! no `%` specifiers, so `%` and `$` stay as they are.
//!
//! How the process runs, as with Docker: `Parameters=` is the entrypoint followed by the
//! command; environment, working directory and user come from the config. A `User` of the
//! form `user:group` cannot be expressed (nspawn has no group setting): the user is kept and
//! the group dropped, with a comment saying so. nspawn resolves `User=` with the image's own
//! `getent`, so images without one must run as root.

use std::fmt::Write as _;
use std::path::Path;

use super::config::ContainerConfig;
use crate::unpack::{Root, UnpackError};

/// The label in which `sandbox build` carries the `.nspawn` its templates rendered.
pub const LABEL_NSPAWN: &str = "org.sandboxes.nspawn";

/// The `.nspawn` that goes next to an image unpacked at `root`: for an image `sandbox build`
/// made, the settings its templates rendered ([`LABEL_NSPAWN`]; in the machines dir,
/// systemd-nspawn trusts only their unprivileged settings); for an image without init, the
/// `[Exec]` section that runs its process; none for an image that boots.
pub fn settings_for(
    root: &Root,
    config: Option<&ContainerConfig>,
    image: &str,
) -> anyhow::Result<Option<String>> {
    use anyhow::Context as _;
    let built = config
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(LABEL_NSPAWN));
    if let Some(settings) = built {
        return Ok(Some(settings.clone()));
    }
    if has_init(root).context("looking for an init system in the image")? {
        return Ok(None);
    }
    Ok(Some(render_exec_section(config, image)?))
}

/// Where an init system is looked for, resolved inside the rootfs.
pub const INIT_PATHS: [&str; 3] = [
    "/sbin/init",
    "/lib/systemd/systemd",
    "/usr/lib/systemd/systemd",
];

/// True when one of [`INIT_PATHS`] leads — symlinks followed inside the root, absolute ones
/// from the root — to an executable regular file.
pub fn has_init(root: &Root) -> Result<bool, UnpackError> {
    use std::os::unix::fs::PermissionsExt;
    for path in INIT_PATHS {
        if let Some(meta) = root.lookup_in_root(Path::new(path))?
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the image's {setting} cannot be written to a .nspawn file: {reason}")]
pub struct NspawnRenderError {
    pub setting: String,
    pub reason: String,
}

fn refuse(setting: &str, reason: impl Into<String>) -> NspawnRenderError {
    NspawnRenderError {
        setting: setting.to_string(),
        reason: reason.into(),
    }
}

/// Renders the `[Exec]` section for an image without init (`image` names it in a comment).
pub fn render_exec_section(
    config: Option<&ContainerConfig>,
    image: &str,
) -> Result<String, NspawnRenderError> {
    let default = ContainerConfig::default();
    let config = config.unwrap_or(&default);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# {} has no init system: machinectl start runs its entrypoint and command.",
        one_line(image)
    );
    out.push_str("[Exec]\nBoot=no\n");
    let argv: Vec<&String> = config
        .entrypoint
        .iter()
        .chain(config.cmd.iter())
        .flatten()
        .collect();
    if argv.is_empty() {
        out.push_str("# The image names no entrypoint or command: nspawn will start a shell.\n");
    } else {
        let words = argv
            .iter()
            .map(|a| quote_word(a).map_err(|r| refuse("entrypoint/command", r)))
            .collect::<Result<Vec<_>, _>>()?;
        let _ = writeln!(out, "Parameters={}", words.join(" "));
    }
    for var in config.env.iter().flatten() {
        let Some((key, _)) = var.split_once('=') else {
            return Err(refuse(
                "environment",
                format!("`{}` is not NAME=VALUE", one_line(var)),
            ));
        };
        if !is_env_name(key) {
            return Err(refuse(
                "environment",
                format!("`{}` is not a valid variable name", one_line(key)),
            ));
        }
        let word = quote_word(var).map_err(|r| refuse("environment", r))?;
        let _ = writeln!(out, "Environment={word}");
    }
    if let Some(dir) = config.working_dir.as_deref().filter(|d| !d.is_empty()) {
        let _ = writeln!(out, "WorkingDirectory={}", working_directory(dir)?);
    }
    if let Some(user) = config.user.as_deref().filter(|u| !u.is_empty()) {
        let (name, group) = match user.split_once(':') {
            Some((name, group)) => (name, Some(group)),
            None => (user, None),
        };
        if name.is_empty() || !is_safe_verbatim(name) || name.contains(char::is_whitespace) {
            return Err(refuse(
                "user",
                format!("`{}` is not a user name or id", one_line(user)),
            ));
        }
        if let Some(group) = group {
            let _ = writeln!(
                out,
                "# The image asks for group `{}` too, which nspawn cannot set.",
                one_line(group)
            );
        }
        let _ = writeln!(out, "User={name}");
    }
    Ok(out)
}

/// One word for `Parameters=`/`Environment=` (see the module documentation).
pub fn quote_word(word: &str) -> Result<String, String> {
    if let Some(c) = word.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(format!(
            "`{}` contains the control character {c:?}",
            one_line(word)
        ));
    }
    let plain = !word.is_empty()
        && !word
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\'));
    if plain {
        return Ok(word.to_string());
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\"'\"'");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Ok(out)
}

/// `WorkingDirectory=` takes an absolute, normalised path verbatim. Docker reads a relative
/// `WorkingDir` from `/`, so it is made absolute the same way.
fn working_directory(dir: &str) -> Result<String, NspawnRenderError> {
    let bad = |r: &str| refuse("working directory", format!("`{}` {r}", one_line(dir)));
    if !is_safe_verbatim(dir) {
        return Err(bad("contains control characters or ends in a backslash"));
    }
    if dir.starts_with(char::is_whitespace) || dir.ends_with(char::is_whitespace) {
        return Err(bad("starts or ends with white space"));
    }
    let parts: Vec<&str> = dir
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(bad("contains `..`"));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Safe to put after `Key=` as is: no control characters, no quotes or backslashes (systemd's
/// `string_is_safe`, which `User=` requires).
fn is_safe_verbatim(s: &str) -> bool {
    !s.chars()
        .any(|c| c.is_control() || matches!(c, '\'' | '"' | '\\'))
}

fn is_env_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// For comments and messages: control characters escaped so nothing can end the line.
fn one_line(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).collect::<String>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// systemd's word splitting for these settings (EXTRACT_UNQUOTE|EXTRACT_RETAIN_ESCAPE),
    /// written from its documented behaviour, to check that quoting round-trips.
    fn systemd_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut chars = line.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| " \t\n\r".contains(*c)) {
                chars.next();
            }
            if chars.peek().is_none() {
                return words;
            }
            let mut word = String::new();
            let mut quote: Option<char> = None;
            for c in chars.by_ref() {
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => word.push(c),
                    None if c == '\'' || c == '"' => quote = Some(c),
                    None if " \t\n\r".contains(c) => break,
                    None => word.push(c),
                }
            }
            assert!(quote.is_none(), "unbalanced quotes in {line:?}");
            words.push(word);
        }
    }

    #[test]
    fn words_round_trip_through_systemds_splitting() {
        let words = [
            "/docker-entrypoint.sh",
            "nginx",
            "-g",
            "daemon off;",
            "",
            "it's",
            "say \"hi\"",
            "both ' and \"",
            "back\\slash\\",
            "tab\there",
            "$HOME %i ~ * ?",
            "ünïcødé",
            "'",
            "\"",
        ];
        let line = words
            .iter()
            .map(|w| quote_word(w).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(!line.ends_with('\\'));
        assert_eq!(systemd_words(&line), words);
        assert_eq!(quote_word("plain").unwrap(), "plain");
        assert_eq!(quote_word("a b").unwrap(), "'a b'");
        assert_eq!(quote_word("it's").unwrap(), "'it'\"'\"'s'");
        for bad in ["new\nline", "cr\r", "nul\0", "esc\x1b"] {
            assert!(quote_word(bad).is_err(), "{bad:?}");
        }
    }

    fn config(json: &str) -> ContainerConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn renders_an_nginx_like_image() {
        let c = config(
            r#"{"Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx","-g","daemon off;"],
                "Env":["PATH=/usr/local/sbin:/usr/bin","NGINX_VERSION=1.25.3","EMPTY=","Q=a 'b'"],
                "WorkingDir":"/srv/./www/","User":"101:102"}"#,
        );
        let out = render_exec_section(Some(&c), "docker.io/library/nginx:latest").unwrap();
        let want = "\
# docker.io/library/nginx:latest has no init system: machinectl start runs its entrypoint and command.
[Exec]
Boot=no
Parameters=/docker-entrypoint.sh nginx -g 'daemon off;'
Environment=PATH=/usr/local/sbin:/usr/bin
Environment=NGINX_VERSION=1.25.3
Environment=EMPTY=
Environment='Q=a '\"'\"'b'\"'\"''
WorkingDirectory=/srv/www
# The image asks for group `102` too, which nspawn cannot set.
User=101
";
        assert_eq!(out, want);
        let env: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("Environment="))
            .flat_map(systemd_words)
            .collect();
        assert_eq!(env, c.env.unwrap());
        let params = out
            .lines()
            .find_map(|l| l.strip_prefix("Parameters="))
            .unwrap();
        assert_eq!(
            systemd_words(params),
            ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
        );
    }

    #[test]
    fn minimal_and_relative_settings() {
        let out = render_exec_section(None, "img").unwrap();
        assert!(
            out.contains("Boot=no\n# The image names no entrypoint"),
            "{out}"
        );
        assert!(!out.contains("Parameters="));
        let c = config(r#"{"Cmd":["sh"],"WorkingDir":"app","User":"nobody"}"#);
        let out = render_exec_section(Some(&c), "img").unwrap();
        assert!(
            out.contains("Parameters=sh\nWorkingDirectory=/app\nUser=nobody\n"),
            "{out}"
        );
    }

    #[test]
    fn refuses_what_systemd_cannot_hold() {
        let cases = [
            (r#"{"Cmd":["echo","a\nb"]}"#, "entrypoint/command"),
            (r#"{"Env":["NOVALUE"]}"#, "not NAME=VALUE"),
            (r#"{"Env":["1BAD=x"]}"#, "not a valid variable name"),
            (r#"{"Env":["A=x\ny"]}"#, "control character"),
            (r#"{"WorkingDir":"/a/../b"}"#, "contains `..`"),
            (r#"{"WorkingDir":"/a\\"}"#, "backslash"),
            (r#"{"WorkingDir":"/a "}"#, "white space"),
            (r#"{"User":"a\"b"}"#, "not a user name"),
            (r#"{"User":":grp"}"#, "not a user name"),
        ];
        for (json, want) in cases {
            let err = render_exec_section(Some(&config(json)), "img").unwrap_err();
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
        // A hostile image name cannot add lines.
        let out = render_exec_section(None, "evil\n[Exec]\nBoot=yes").unwrap();
        let starting = |p: &str| out.lines().filter(|l| l.starts_with(p)).count();
        assert_eq!((starting("Boot="), starting("[Exec]")), (1, 1), "{out}");
    }
}
