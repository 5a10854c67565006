//! Loading the configuration directory: every `*.toml` file, in name order.

use crate::error::EngineError;
use std::path::Path;
use tenure_core::config::Config;
use tenure_core::policy::Policy;

/// Reads every `*.toml` file of `dir` (in name order), parses and compiles it.
/// File names in error messages are shown relative to `dir`'s parent as given.
pub fn load_policy(dir: &Path) -> Result<Policy, EngineError> {
    let read_err = |source| EngineError::ConfigRead {
        path: dir.display().to_string(),
        source,
    };
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(EngineError::Invalid(format!(
            "{} holds no *.toml configuration files",
            dir.display()
        )));
    }
    let mut files = Vec::new();
    for p in names {
        let text = std::fs::read_to_string(&p).map_err(|source| EngineError::ConfigRead {
            path: p.display().to_string(),
            source,
        })?;
        files.push((p.display().to_string(), text));
    }
    let config = Config::parse(files)?;
    // SCIM sources name SCIM attribute paths; check them against the User schema.
    let mut scim_errors = Vec::new();
    for s in &config.sources {
        if s.item.format == tenure_core::config::SourceFormat::Scim {
            for message in crate::scim::check_source(&s.item) {
                scim_errors.push(tenure_core::config::ConfigError {
                    location: config.location(s.file, s.span.start),
                    message,
                });
            }
        }
    }
    if !scim_errors.is_empty() {
        let check = |s: &tenure_core::config::SystemConfig| {
            tenure_connectors::validate(s).err().unwrap_or_default()
        };
        if let Err(tenure_core::config::ConfigErrors(more)) = Policy::compile(config, &check) {
            scim_errors.extend(more);
        }
        scim_errors.sort();
        return Err(tenure_core::config::ConfigErrors(scim_errors).into());
    }
    let check = |s: &tenure_core::config::SystemConfig| {
        tenure_connectors::validate(s).err().unwrap_or_default()
    };
    Ok(Policy::compile(config, &check)?)
}
