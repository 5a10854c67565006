//! A real Active Directory domain controller for the tests: Samba's, from
//! Debian's `samba` package, provisioned into a temporary directory and
//! serving LDAP and LDAPS on loopback.
//!
//! A domain controller binds the standard ports (389 and 636), so only one
//! can run on a machine: the tests of one process share one, started by the
//! first test that needs it (about ten seconds), and each test works in its
//! own organizational unit with its own names. The controller runs under a
//! small shell watchdog that stops it and removes its directory as soon as
//! the test process is gone (a static is never dropped).

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::ldap_slapd::missing;

pub const REALM: &str = "tenure.test";
pub const DOMAIN_DN: &str = "DC=tenure,DC=test";
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=tenure,DC=test";
pub const ADMIN_PW: &str = "Passw0rd!Passw0rd";
pub const LDAPS_URL: &str = "ldaps://127.0.0.1:636";

const INSTALL: &str = "install it with scripts/install-ldap-test-deps (apt-get install samba samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind krb5-user)";

/// The shared domain controller (its directory is removed by the watchdog
/// when the process exits).
pub struct SambaDc;

static DC: OnceLock<Result<SambaDc, String>> = OnceLock::new();

/// The domain controller of this test process, started on first use; `None`
/// (after a `SKIPPED` notice, or a panic in CI) when Samba is not installed.
pub fn domain_controller(test: &str) -> Option<&'static SambaDc> {
    let which = |tool: &str| {
        ["/usr/sbin", "/usr/bin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(tool).exists())
    };
    if !which("samba") || !which("samba-tool") {
        missing(
            test,
            &format!("Samba's Active Directory domain controller is not installed; {INSTALL}"),
        );
        return None;
    }
    match DC.get_or_init(start) {
        Ok(dc) => Some(dc),
        Err(e) => panic!("{test}: the Samba domain controller did not start: {e}"),
    }
}

fn start() -> Result<SambaDc, String> {
    if TcpStream::connect_timeout(
        &"127.0.0.1:636".parse().map_err(|e| format!("{e}"))?,
        Duration::from_millis(300),
    )
    .is_ok()
    {
        return Err("something already listens on 127.0.0.1:636; only one domain controller can run on a machine (is another test run using it?)".to_owned());
    }
    let tmp = tempfile::Builder::new()
        .prefix("tenure-samba-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let dir = tmp.keep();
    let target = dir.join("dc");
    let out = Command::new("samba-tool")
        .args([
            "domain",
            "provision",
            "--realm=TENURE.TEST",
            "--domain=TENURE",
            "--server-role=dc",
            "--dns-backend=NONE",
            &format!("--adminpass={ADMIN_PW}"),
            "--use-rfc2307",
            "--option=interfaces=lo",
            "--option=bind interfaces only=yes",
        ])
        .arg(format!("--targetdir={}", target.display()))
        .output()
        .map_err(|e| format!("samba-tool: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!(
            "samba-tool domain provision failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The watchdog: runs samba, and stops it (and cleans up) when this process is gone.
    let script = r#"
samba -s "$1/dc/etc/smb.conf" -i -M single >"$1/samba.log" 2>&1 &
sp=$!
while kill -0 "$2" 2>/dev/null && kill -0 "$sp" 2>/dev/null; do sleep 0.5; done
kill "$sp" 2>/dev/null
wait "$sp" 2>/dev/null
rm -rf "$1"
"#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("tenure-samba-watchdog")
        .arg(&dir)
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start samba: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect("127.0.0.1:636").is_ok()
            && TcpStream::connect("127.0.0.1:389").is_ok()
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "samba did not listen on 127.0.0.1:389 and :636 within 60 s:\n{}",
                std::fs::read_to_string(dir.join("samba.log")).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Listening is not quite serving yet: wait for a bind to work.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = Command::new("ldapsearch")
            .env("LDAPTLS_REQCERT", "never")
            .args([
                "-x",
                "-H",
                LDAPS_URL,
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PW,
                "-b",
                DOMAIN_DN,
                "-s",
                "base",
                "(objectClass=*)",
                "1.1",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            break;
        }
        if Instant::now() > deadline {
            return Err("samba listens but binds fail".to_owned());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(SambaDc)
}
