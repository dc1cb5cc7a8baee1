//! Where mcpctl talks to and as whom: flags > environment > config file > defaults, plus the
//! stored session and the batch checkpoints, all in the config directory.

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const DEFAULT_URL: &str = "http://127.0.0.1:5001";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Human,
    Json,
}

impl Output {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "human" | "table" | "text" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            other => Err(Error::usage(format!(
                "unknown output format {other:?}: use json or human"
            ))),
        }
    }
}

/// The config file (`config.json`); every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    url: Option<String>,
    output: Option<String>,
    username: Option<String>,
}

/// What the global flags said; `None` falls through to the environment, then the file.
#[derive(Debug, Default)]
pub struct Flags {
    pub url: Option<String>,
    pub token: Option<String>,
    pub output: Option<String>,
    pub config: Option<String>,
}

/// The resolved settings of one run.
#[derive(Debug)]
pub struct Config {
    pub url: String,
    /// A token given by `--token` or `MCP_TOKEN`: used as is, never refreshed or stored.
    pub token: Option<String>,
    pub output: Output,
    pub username: Option<String>,
    /// The directory holding the config file, the session and the checkpoints.
    pub dir: PathBuf,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn config_path(flag: Option<&str>) -> Result<PathBuf> {
    if let Some(p) = flag.map(String::from).or_else(|| env("MCPCTL_CONFIG")) {
        return Ok(PathBuf::from(p));
    }
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))
        .ok_or_else(|| {
            Error::usage("cannot locate the config directory: set HOME, or MCPCTL_CONFIG")
        })?;
    Ok(base.join("mcpctl").join("config.json"))
}

impl Config {
    pub fn resolve(flags: Flags) -> Result<Self> {
        let path = config_path(flags.config.as_deref())?;
        let file: FileConfig = match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                Error::usage(format!("config file {} is invalid: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(e) => {
                return Err(Error::usage(format!(
                    "cannot read config file {}: {e}",
                    path.display()
                )));
            }
        };
        let url = flags
            .url
            .or_else(|| env("MCP_URL"))
            .or(file.url)
            .unwrap_or_else(|| DEFAULT_URL.into());
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::usage(format!(
                "server URL {url:?} must start with http:// or https://"
            )));
        }
        let output = match flags
            .output
            .or_else(|| env("MCPCTL_OUTPUT"))
            .or(file.output)
        {
            Some(o) => Output::parse(&o)?,
            None => Output::Human,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Self {
            url,
            token: flags.token.or_else(|| env("MCP_TOKEN")),
            output,
            username: env("MCP_USERNAME").or(file.username),
            dir,
        })
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.dir.join("credentials.json")
    }

    pub fn checkpoint_dir(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }
}

/// The stored session of `mcpctl login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub url: String,
    pub username: String,
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds after which the access token is refreshed first.
    pub expires_at: u64,
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Credentials {
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                Error::auth(format!(
                    "stored session {} is unreadable ({e}); run mcpctl login",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::usage(format!("cannot read {}: {e}", path.display()))),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).expect("credentials serialize");
        write_private(path, &text)
    }
}

/// Writes a file only its owner can read (0600, in a 0700 directory), atomically by rename so a
/// crash never leaves half a file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::usage(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    // The mode above applies only to new files; a leftover temp file keeps its old mode.
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}
