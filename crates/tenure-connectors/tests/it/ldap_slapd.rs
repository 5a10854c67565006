//! A private OpenLDAP `slapd` for one test: a temporary directory with its
//! configuration (core, cosine, nis and inetOrgPerson schemas, the mdb
//! backend and the ppolicy overlay), a base tree loaded with `slapadd`, and
//! the server on a free 127.0.0.1 port (plus an `ldaps://` port with a
//! certificate from a throw-away CA, when asked). Killed when dropped.
//!
//! Uses only the standard library, `tempfile` and the OpenLDAP command-line
//! tools, so that other test binaries can include it with `#[path]`.

#![allow(dead_code)]

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=com";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
pub const ADMIN_PW: &str = "secret";
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";
pub const GROUPS: &str = "ou=groups,dc=example,dc=com";
pub const DISABLED: &str = "ou=disabled,dc=example,dc=com";

const SLAPD: &str = "/usr/sbin/slapd";
const INSTALL: &str =
    "install it with scripts/install-ldap-test-deps (apt-get install slapd ldap-utils)";

/// Prints a line even when the test harness captures output.
pub fn notice(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Whether a missing server must fail the test (in CI) rather than skip it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports missing software: a failure in CI, a `SKIPPED` notice elsewhere.
pub fn missing(test: &str, what: &str) {
    if in_ci() {
        panic!("{test}: {what} (CI=true, so this is a failure, not a skip)");
    }
    notice(&format!("SKIPPED {test}: {what}"));
}

/// A free port on 127.0.0.1 (free when this returns; taken by whoever binds first).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Options of a test server.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlapdOptions {
    /// Also serve `ldaps://` and StartTLS with a certificate for 127.0.0.1.
    pub tls: bool,
}

pub struct Slapd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: Option<u16>,
    /// The CA certificate that signed the server's (when `tls`).
    pub ca_file: Option<PathBuf>,
    conf: PathBuf,
    child: Option<Child>,
}

impl Slapd {
    /// Starts a server with the base tree, or `None` (after a notice, or a
    /// panic in CI) when slapd is not installed.
    pub fn start(test: &str, opts: SlapdOptions) -> Option<Slapd> {
        if !Path::new(SLAPD).exists() || Command::new("ldapadd").arg("-VV").output().is_err() {
            missing(
                test,
                &format!("OpenLDAP's slapd and ldap-utils are not installed; {INSTALL}"),
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("db")).expect("db dir");
        let mut tls_conf = String::new();
        let mut ca_file = None;
        if opts.tls {
            make_certificates(d);
            tls_conf = format!(
                "TLSCACertificateFile {0}/ca.pem\nTLSCertificateFile {0}/server.pem\nTLSCertificateKeyFile {0}/server.key\n",
                d.display()
            );
            ca_file = Some(d.join("ca.pem"));
        }
        let conf = d.join("slapd.conf");
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
{tls_conf}
database mdb
maxsize 4294967296
suffix \"{SUFFIX}\"
rootdn \"{ADMIN_DN}\"
rootpw {ADMIN_PW}
directory {dir}/db
index objectClass eq
index uid,cn,mail eq
index member,uniqueMember,memberUid eq
index modifyTimestamp eq
overlay ppolicy
",
                dir = d.display()
            ),
        )
        .expect("write slapd.conf");
        let base = format!(
            "dn: {SUFFIX}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
             dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: {DISABLED}\nobjectClass: organizationalUnit\nou: disabled\n"
        );
        std::fs::write(d.join("base.ldif"), base).expect("write base.ldif");
        run(
            Command::new("/usr/sbin/slapadd")
                .arg("-f")
                .arg(&conf)
                .arg("-l")
                .arg(d.join("base.ldif")),
            "slapadd of the base tree",
        );
        let port = free_port();
        let tls_port = opts.tls.then(free_port);
        let mut s = Slapd {
            dir,
            port,
            tls_port,
            ca_file,
            conf,
            child: None,
        };
        s.launch();
        Some(s)
    }

    fn launch(&mut self) {
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(p) = self.tls_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        let log = std::fs::File::create(self.dir.path().join("slapd.log")).expect("log file");
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(&self.conf)
            .arg("-h")
            .arg(&urls)
            .arg("-d")
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "slapd exited ({status}):\n{}",
                    std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "slapd did not listen on 127.0.0.1:{} within 20 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!(
            "ldaps://127.0.0.1:{}",
            self.tls_port.expect("started with tls")
        )
    }

    /// Kills the server at once (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Loads an LDIF file with `slapadd -q` (fast, offline): stops the
    /// server, loads, starts it again.
    pub fn load_offline(&mut self, ldif: &Path) {
        self.stop();
        run(
            Command::new("/usr/sbin/slapadd")
                .arg("-q")
                .arg("-f")
                .arg(&self.conf)
                .arg("-l")
                .arg(ldif),
            "slapadd",
        );
        self.launch();
    }

    /// Starts it again on the same port, with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(name);
        c.args(["-x", "-H", &self.url(), "-D", ADMIN_DN, "-w", ADMIN_PW]);
        c
    }

    /// Adds entries with `ldapadd`.
    pub fn ldapadd(&self, ldif: &str) {
        let path = self.dir.path().join("add.ldif");
        std::fs::write(&path, ldif).expect("write ldif");
        run(self.tool("ldapadd").arg("-f").arg(&path), "ldapadd");
    }

    /// Applies changes with `ldapmodify`.
    pub fn ldapmodify(&self, ldif: &str) {
        let path = self.dir.path().join("modify.ldif");
        std::fs::write(&path, ldif).expect("write ldif");
        run(self.tool("ldapmodify").arg("-f").arg(&path), "ldapmodify");
    }

    /// `ldapsearch` output (LDIF, unwrapped, without comments).
    pub fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        let mut c = self.tool("ldapsearch");
        c.args(["-LLL", "-o", "ldif-wrap=no", "-b", base, filter]);
        c.args(attrs);
        run(&mut c, "ldapsearch")
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate for 127.0.0.1 and localhost, with openssl.
fn make_certificates(d: &Path) {
    let openssl = |args: &[&str], what: &str| {
        run(Command::new("openssl").current_dir(d).args(args), what);
    };
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Tenure Test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        "openssl: test CA",
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        "openssl: server key",
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
        "openssl: server certificate",
    );
}
