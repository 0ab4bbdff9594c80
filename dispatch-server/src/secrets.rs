//! Secrets the server generates on first start (API key, login password, session key) and keeps
//! in a small JSON file readable only by its owner, so they survive restarts.

use dispatch_core::{Error, Result};
use rand::RngCore;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Default)]
pub struct SecretsFile {
    values: BTreeMap<String, String>,
}

impl SecretsFile {
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let values: BTreeMap<String, String> =
                    serde_json::from_str(&text).map_err(|e| {
                        Error::invalid(
                            "DISPATCH_SECRETS_FILE",
                            format!("{} is not a JSON object of strings: {e}", path.display()),
                        )
                    })?;
                Ok(SecretsFile { values })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SecretsFile::default()),
            Err(e) => Err(Error::invalid(
                "DISPATCH_SECRETS_FILE",
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_string(), value.to_string());
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.values)
            .map_err(|e| Error::internal(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            Error::invalid(
                "DISPATCH_SECRETS_FILE",
                format!("cannot write {}: {e}", path.display()),
            )
        })
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// `dsp_` + 64 hex characters (256 bits).
pub fn new_api_key() -> String {
    format!("dsp_{}", random_hex(32))
}

/// 24 characters from an alphabet without look-alikes (about 137 bits).
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}
