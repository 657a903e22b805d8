//! The image config (OCI `application/vnd.oci.image.config.v1+json`, Docker
//! `application/vnd.docker.container.image.v1+json`; the same document): the platform, the
//! layers' uncompressed digests (`rootfs.diff_ids`) and how to run the container. Only the
//! fields this tool uses are typed; the raw bytes are what the provenance keeps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::platform::PlatformSpec;
use crate::digest::Digest;

/// Configs larger than this are refused before parsing (real ones are kilobytes; history
/// entries are the only part that grows).
pub const MAX_CONFIG_SIZE: u64 = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

/// How the image's process is run (the `config` object; Docker's capitalised keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("image config is {size} bytes, more than the {max} bytes allowed")]
    TooLarge { size: u64, max: u64 },
    #[error("image config is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("image config has rootfs type `{0}`, expected `layers`")]
    RootFsType(String),
}

impl ImageConfig {
    /// Parses and checks a config document.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ConfigError> {
        let size = bytes.len() as u64;
        if size > MAX_CONFIG_SIZE {
            return Err(ConfigError::TooLarge {
                size,
                max: MAX_CONFIG_SIZE,
            });
        }
        let config: ImageConfig = serde_json::from_slice(bytes)?;
        if config.rootfs.kind != "layers" {
            return Err(ConfigError::RootFsType(config.rootfs.kind));
        }
        Ok(config)
    }

    /// The platform the config says the image is for; `None` when it does not say.
    pub fn platform(&self) -> Option<PlatformSpec> {
        if self.os.is_empty() || self.architecture.is_empty() {
            return None;
        }
        Some(PlatformSpec::new(
            &self.os,
            &self.architecture,
            self.variant.as_deref(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_docker_style_config() {
        let doc = br#"{
            "architecture": "arm", "os": "linux", "variant": "v7",
            "config": {"User": "nginx:nginx", "Env": ["PATH=/usr/bin", "A=b c"],
                       "Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
                       "WorkingDir": "/srv", "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT"},
            "rootfs": {"type": "layers", "diff_ids": [
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
            "history": [{"created_by": "x", "empty_layer": true}]
        }"#;
        let c = ImageConfig::parse(doc).unwrap();
        assert_eq!(c.platform().unwrap().to_string(), "linux/arm/v7");
        let run = c.config.as_ref().unwrap();
        assert_eq!(run.user.as_deref(), Some("nginx:nginx"));
        assert_eq!(run.cmd.as_ref().unwrap()[2], "daemon off;");
        assert_eq!(run.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.rootfs.diff_ids, vec![Digest::of(b"")]);
    }

    #[test]
    fn nulls_and_missing_run_settings_are_absent() {
        let doc = br#"{"architecture":"amd64","os":"linux",
            "config":{"Entrypoint":null,"Cmd":null,"Env":null},
            "rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = ImageConfig::parse(doc).unwrap();
        assert_eq!(c.config, Some(ContainerConfig::default()));
        let doc = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = ImageConfig::parse(doc).unwrap();
        assert_eq!(c.platform(), None);
        assert_eq!(c.config, None);
    }

    #[test]
    fn refuses_bad_configs() {
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"rootfs":{"type":"tarball","diff_ids":[]}}"#,
                "rootfs type `tarball`",
            ),
            (br#"{"architecture":"amd64"}"#, "missing field `rootfs`"),
            (
                br#"{"rootfs":{"type":"layers","diff_ids":["sha256:00"]}}"#,
                "is not of the form sha256:",
            ),
            (b"not json", "not valid"),
        ];
        for (doc, want) in cases {
            let err = ImageConfig::parse(doc).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
        let big = vec![b' '; MAX_CONFIG_SIZE as usize + 1];
        assert!(matches!(
            ImageConfig::parse(&big),
            Err(ConfigError::TooLarge { .. })
        ));
    }
}
