//! E-mail templates: one file per kind of notice (`leaver.txt`, …), shipped
//! inside the crate and overridable, file by file, from the configuration's
//! template directory (`[notifications] templates`), so they can be edited
//! without rebuilding Tenure.
//!
//! A template is a small e-mail: a first line `Subject: …`, an empty line,
//! then the body. Templates are [minijinja](https://docs.rs/minijinja)
//! (Jinja2 syntax), rendered with a `notice` object (`notice.kind`,
//! `notice.at`, `notice.detail`, `notice.system`, `notice.identity.id`,
//! `.display_name`, `.attributes.NAME`, `.manager_email`) and `recipient`
//! (the address being written to). minijinja rather than a compile-time
//! engine such as askama, because these templates are loaded at run time
//! from the user's configuration; it is the runtime Jinja engine of the Rust
//! ecosystem, small, without unsafe code or dependencies it does not need.
//!
//! Undefined variables are errors (strict mode), never silently empty: a
//! typo such as `notice.identity.dispay_name` fails with the template's file
//! and line. [`Templates::load`] parses every template and test-renders it
//! with a sample notice carrying every declared attribute, so such mistakes
//! are found when Tenure starts (and by `tenure check`), not when a leaver's
//! e-mail is due.

use crate::NotifyError;
use crate::notice::{Notice, NoticeIdentity};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tenure_core::config::NoticeKind;

/// The shipped templates.
const DEFAULTS: [(NoticeKind, &str); 11] = [
    (NoticeKind::Joiner, include_str!("../templates/joiner.txt")),
    (NoticeKind::Mover, include_str!("../templates/mover.txt")),
    (NoticeKind::Leaver, include_str!("../templates/leaver.txt")),
    (NoticeKind::Rehire, include_str!("../templates/rehire.txt")),
    (
        NoticeKind::ExpiryUpcoming,
        include_str!("../templates/expiry_upcoming.txt"),
    ),
    (
        NoticeKind::Expired,
        include_str!("../templates/expired.txt"),
    ),
    (
        NoticeKind::Failure,
        include_str!("../templates/failure.txt"),
    ),
    (
        NoticeKind::Quarantine,
        include_str!("../templates/quarantine.txt"),
    ),
    (
        NoticeKind::QuarantineLifted,
        include_str!("../templates/quarantine_lifted.txt"),
    ),
    (
        NoticeKind::Suspended,
        include_str!("../templates/suspended.txt"),
    ),
    (
        NoticeKind::Resumed,
        include_str!("../templates/resumed.txt"),
    ),
];

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RenderedEmail {
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// The loaded templates.
pub struct Templates {
    env: Environment<'static>,
    /// Template name → where it came from, for errors.
    origin: BTreeMap<String, String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

fn name(kind: NoticeKind) -> String {
    format!("{kind}.txt")
}

impl Templates {
    /// The shipped templates, each replaced by `dir/KIND.txt` where that file
    /// exists. Every template is parsed and test-rendered with a sample
    /// notice whose identity has `attributes`.
    pub fn load(dir: Option<&Path>, attributes: &BTreeSet<String>) -> Result<Self, NotifyError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        let mut origin = BTreeMap::new();
        if let Some(d) = dir
            && !d.is_dir()
        {
            return Err(NotifyError::Config(format!(
                "[notifications] templates: {} is not a directory",
                d.display()
            )));
        }
        for (kind, text) in DEFAULTS {
            let n = name(kind);
            let user = dir.map(|d| d.join(&n)).filter(|p| p.is_file());
            let (source, from) = match user {
                Some(p) => {
                    let text = std::fs::read_to_string(&p).map_err(|e| NotifyError::Template {
                        file: p.display().to_string(),
                        message: format!("cannot read it: {e}"),
                    })?;
                    (text, p.display().to_string())
                }
                None => (text.to_owned(), format!("built-in {n}")),
            };
            env.add_template_owned(n.clone(), source)
                .map_err(|e| NotifyError::Template {
                    file: from.clone(),
                    message: describe(&e),
                })?;
            origin.insert(n, from);
        }
        let t = Templates { env, origin };
        let sample = sample_notice(attributes);
        for kind in NoticeKind::ALL {
            let mut n = sample.clone();
            n.kind = kind;
            t.render(&n, "someone@example.com")?;
        }
        Ok(t)
    }

    /// Renders the e-mail for `notice` to `recipient`.
    pub fn render(&self, notice: &Notice, recipient: &str) -> Result<RenderedEmail, NotifyError> {
        let n = name(notice.kind);
        let file = self.origin.get(&n).cloned().unwrap_or_else(|| n.clone());
        let err = |message: String| NotifyError::Template {
            file: file.clone(),
            message,
        };
        let tmpl = self.env.get_template(&n).map_err(|e| err(describe(&e)))?;
        let ctx = minijinja::context! {
            notice => Ctx::from(notice),
            recipient => recipient,
        };
        let text = tmpl.render(ctx).map_err(|e| err(describe(&e)))?;
        let (first, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
        let subject =
            first
                .strip_prefix("Subject:")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    err("the first line must be `Subject: …` followed by an empty line and the body"
                    .into())
                })?;
        if subject.contains(['\r', '\n']) {
            return Err(err("the subject must be one line".into()));
        }
        Ok(RenderedEmail {
            subject: subject.to_owned(),
            body: body.trim_start_matches(['\r', '\n']).to_owned(),
        })
    }
}

/// What templates see as `notice`.
#[derive(Serialize)]
struct Ctx<'a> {
    id: &'a str,
    kind: &'static str,
    at: String,
    detail: &'a str,
    system: Option<&'a str>,
    identity: Option<&'a NoticeIdentity>,
}

impl<'a> From<&'a Notice> for Ctx<'a> {
    fn from(n: &'a Notice) -> Self {
        Ctx {
            id: &n.id,
            kind: n.kind.as_str(),
            at: n.at.format("%Y-%m-%d %H:%M UTC").to_string(),
            detail: &n.detail,
            system: n.system.as_deref(),
            identity: n.identity.as_ref(),
        }
    }
}

fn sample_notice(attributes: &BTreeSet<String>) -> Notice {
    Notice {
        id: "sample".into(),
        kind: NoticeKind::Leaver,
        identity: Some(NoticeIdentity {
            id: "E0001".into(),
            display_name: "Sample Person".into(),
            attributes: attributes
                .iter()
                .map(|a| (a.clone(), format!("sample {a}")))
                .collect(),
            manager_email: Some("manager@example.com".into()),
        }),
        system: Some("sample-system".into()),
        detail: "sample detail".into(),
        at: chrono::DateTime::UNIX_EPOCH,
    }
}

/// minijinja's message with the line it knows.
fn describe(e: &minijinja::Error) -> String {
    let what = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    match e.line() {
        Some(l) => format!("line {l}: {what}"),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_render_for_every_kind() -> Result<(), Box<dyn std::error::Error>> {
        let t = Templates::load(None, &BTreeSet::from(["email".to_owned()]))?;
        let mut n = sample_notice(&BTreeSet::new());
        n.kind = NoticeKind::Suspended;
        n.detail = "phishing".into();
        let e = t.render(&n, "x@example.com")?;
        assert_eq!(e.subject, "Suspended: Sample Person");
        assert!(e.body.contains("Reason: phishing"), "{}", e.body);
        Ok(())
    }

    #[test]
    fn a_typo_in_a_user_template_names_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("leaver.txt"),
            "Subject: bye\n\nBye {{ notice.identity.dispay_name }}\n",
        )?;
        let Err(e) = Templates::load(Some(dir.path()), &BTreeSet::new()) else {
            return Err("a typo must fail".into());
        };
        let m = e.to_string();
        assert!(m.contains("leaver.txt"), "{m}");
        assert!(m.contains("undefined"), "{m}");
        assert!(m.contains("line 3"), "{m}");
        Ok(())
    }

    #[test]
    fn a_template_without_subject_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("joiner.txt"), "Hello\n")?;
        let Err(e) = Templates::load(Some(dir.path()), &BTreeSet::new()) else {
            return Err("must fail".into());
        };
        assert!(e.to_string().contains("Subject:"), "{e}");
        Ok(())
    }
}
