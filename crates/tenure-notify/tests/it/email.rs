//! E-mail through a real SMTP conversation with the sink the test starts.

use crate::support::{ConfigDir, SmtpSink, TestDb, TestResult, both, notice, secs, t0};
use tenure_notify::{Dispatcher, NoticeKind, Notifier, deliver_due};
use tenure_store::DeliveryState;

fn config(port: u16, extra: &str) -> String {
    format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"Tenure <tenure@example.com>\"\n\n\
         [notifications]\nmax_attempts = 2\nretry_seconds = 60\n\
         addresses = {{ it = \"it@example.com\", security = \"security@example.com\", bad = \"reject-me@example.com\" }}\n\
         {extra}\n\
         [[notifications.email]]\nevents = [\"leaver\"]\nto = [\"person\", \"manager\", \"it\"]\n\n\
         [[notifications.email]]\nevents = [\"suspended\", \"leaver\"]\nto = [\"security\", \"it\"]\n\n\
         [[notifications.email]]\nevents = [\"quarantine\"]\nto = [\"bad\"]\n"
    )
}

/// A leaver is e-mailed to the person, their manager, IT and security (IT
/// once, though two routes name it), each with the subject and body of the
/// template.
async fn leaver_mail_to_every_recipient(db: TestDb) -> TestResult {
    let sink = SmtpSink::start().await?;
    let dir = ConfigDir::new(&config(sink.port, ""))?;
    let cfg = dir.config()?;
    let store = db.store().await?;
    let notifier = Notifier::new(&cfg, dir.path())?;
    let dispatcher = Dispatcher::new(&cfg, dir.path())?;
    let e = notifier
        .enqueue(
            &store,
            &[notice("leaver:E1042", NoticeKind::Leaver, t0())],
            t0(),
        )
        .await?;
    assert_eq!(e.added, 4, "{e:?}");
    let s = deliver_due(&store, t0(), &dispatcher, 100).await?;
    assert_eq!(s.delivered, 4, "{s:?}");

    let mails = sink.mails();
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(
        to,
        [
            "ada@example.com",
            "grace@example.com",
            "it@example.com",
            "security@example.com"
        ]
    );
    for m in &mails {
        assert_eq!(m.from, "tenure@example.com");
        assert!(
            m.data.contains("Subject: Leaver: Ada Lovelace\r\n"),
            "{}",
            m.data
        );
        assert!(
            m.data.contains(
                "Ada Lovelace (E1042) leaves; deprovisioning started on 2026-11-24 09:00 UTC."
            ),
            "{}",
            m.data
        );
        assert!(m.data.contains("terminated by HR"), "{}", m.data);
        assert!(m.data.contains(&format!("To: {}", m.to[0])), "{}", m.data);
    }
    Ok(())
}

/// Templates in the configuration's template directory replace the shipped
/// ones; an address the server refuses (550) fails at once, alone; a server
/// that is down is retried.
async fn user_templates_refusals_and_a_down_server(db: TestDb) -> TestResult {
    let sink = SmtpSink::start().await?;
    // The templates are test-rendered with the attributes the sources declare.
    let source = "[[source]]\nid = \"hr\"\nformat = \"csv\"\ncolumns = { id = \"id\" }\n\
                  attributes = { email = \"mail\", department = \"dept\" }\n";
    let dir = ConfigDir::new(&format!(
        "{source}{}",
        config(sink.port, "templates = \"mail\"")
    ))?;
    std::fs::create_dir_all(dir.path().join("mail"))?;
    std::fs::write(
        dir.path().join("mail/suspended.txt"),
        "Subject: [SECURITY] {{ notice.identity.display_name }} suspended\n\n\
         {{ notice.identity.display_name }} of {{ notice.identity.attributes.department }}: {{ notice.detail }}\n\
         Written to {{ recipient }}.\n",
    )?;
    let cfg = dir.config()?;
    let store = db.store().await?;
    let notifier = Notifier::new(&cfg, dir.path())?;
    let dispatcher = Dispatcher::new(&cfg, dir.path())?;
    let mut n = notice("s1", NoticeKind::Suspended, t0());
    n.detail = "phished".into();
    let mut q = notice("q1", NoticeKind::Quarantine, t0());
    q.identity = None;
    q.system = Some("crm".into());
    notifier.enqueue(&store, &[n, q], t0()).await?;
    let s = deliver_due(&store, t0(), &dispatcher, 100).await?;
    assert_eq!((s.delivered, s.failed), (2, 1), "{s:?}");
    let mails = sink.mails();
    let sec = mails
        .iter()
        .find(|m| m.to == ["security@example.com"])
        .ok_or("no mail to security")?;
    assert!(
        sec.data
            .contains("Subject: [SECURITY] Ada Lovelace suspended"),
        "{}",
        sec.data
    );
    assert!(
        sec.data.contains("Ada Lovelace of Sales: phished"),
        "{}",
        sec.data
    );
    assert!(
        sec.data.contains("Written to security@example.com."),
        "{}",
        sec.data
    );
    let failed = store.deliveries(Some(DeliveryState::Failed), 10).await?;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].target, "reject-me@example.com");
    let e = failed[0].last_error.clone().unwrap_or_default();
    assert!(e.contains("550") || e.contains("no such mailbox"), "{e}");

    // the server goes away: a new leaver's mails wait and are retried
    drop(sink);
    notifier
        .enqueue(&store, &[notice("l2", NoticeKind::Leaver, t0())], t0())
        .await?;
    let s = deliver_due(&store, t0() + secs(1), &dispatcher, 100).await?;
    assert_eq!(s.delivered, 0, "{s:?}");
    assert!(s.retried >= 1, "{s:?}");
    let pending = store.deliveries(Some(DeliveryState::Pending), 10).await?;
    assert_eq!(pending.len(), 4);
    Ok(())
}

both!(
    leaver_mail_to_every_recipient,
    user_templates_refusals_and_a_down_server,
);

/// A person without an e-mail address is reported, not silently dropped,
/// and the other recipients still get theirs.
#[tokio::test]
async fn a_recipient_without_address_is_reported() -> TestResult {
    let dir = ConfigDir::new(&config(25, ""))?;
    let cfg = dir.config()?;
    let notifier = Notifier::new(&cfg, dir.path())?;
    let mut n = notice("x", NoticeKind::Leaver, t0());
    if let Some(i) = n.identity.as_mut() {
        i.attributes.remove("email");
        i.manager_email = None;
    }
    let (d, skipped) = notifier.deliveries(&n, t0());
    assert_eq!(d.len(), 2, "it and security");
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped.iter().any(|s| s.contains("E1042 has no email")),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(|s| s.contains("no manager")),
        "{skipped:?}"
    );
    Ok(())
}

/// `tenure check` can test the templates without any secret: a typo in a
/// user template is named with its file and line.
#[tokio::test]
async fn check_templates_names_the_broken_template() -> TestResult {
    let dir = ConfigDir::new(&config(25, "templates = \"mail\""))?;
    std::fs::create_dir_all(dir.path().join("mail"))?;
    std::fs::write(
        dir.path().join("mail/joiner.txt"),
        "Subject: Hi\n\n{{ notice.identity.display_nam }}\n",
    )?;
    let cfg = dir.config()?;
    let Err(e) = tenure_notify::check_templates(&cfg, dir.path()) else {
        return Err("a typo must be found".into());
    };
    let m = e.to_string();
    assert!(m.contains("mail/joiner.txt") && m.contains("line 3"), "{m}");
    std::fs::write(
        dir.path().join("mail/joiner.txt"),
        "Subject: Hi\n\n{{ notice.identity.display_name }}\n",
    )?;
    tenure_notify::check_templates(&cfg, dir.path())?;
    Ok(())
}
