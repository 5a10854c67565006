//! Reading secret references (`{ env = … }` or `{ file = … }`).
//!
//! Values are wrapped in [`Secret`], whose `Debug` shows `***`; errors name
//! the reference and the configuration key, never the value.

use crate::NotifyError;
use std::fmt;
use std::path::Path;
use tenure_core::config::SecretRef;

/// A secret read from its reference.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Reads `r` (a file is relative to `config_dir`); `key` names the setting
/// in errors. With `trim`, surrounding whitespace (a trailing newline) goes.
pub(crate) fn read(
    key: &str,
    r: &SecretRef,
    config_dir: &Path,
    trim: bool,
) -> Result<Secret, NotifyError> {
    let v = match (&r.env, &r.file) {
        (Some(var), None) => std::env::var(var).map_err(|e| {
            NotifyError::Config(match e {
                std::env::VarError::NotPresent => {
                    format!("{key}: environment variable {var} is not set")
                }
                std::env::VarError::NotUnicode(_) => {
                    format!("{key}: environment variable {var} is not valid UTF-8")
                }
            })
        })?,
        (None, Some(file)) => {
            let path = config_dir.join(file);
            std::fs::read_to_string(&path).map_err(|e| {
                NotifyError::Config(format!("{key}: cannot read {}: {e}", path.display()))
            })?
        }
        _ => {
            return Err(NotifyError::Config(format!(
                "{key}: write {{ env = \"VARIABLE\" }} or {{ file = \"path\" }}"
            )));
        }
    };
    let v = if trim { v.trim().to_owned() } else { v };
    if v.trim().is_empty() {
        return Err(NotifyError::Config(format!("{key}: the secret is empty")));
    }
    Ok(Secret(v))
}
