//! Helpers: a prepared example organisation in a temporary directory, and a
//! way to run the binary against it that prints everything on failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_tenure");

pub struct Org {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub database: String,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(args: &[String], o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
        .context(args)
    }
    fn context(self, args: &[String]) -> Run {
        // Kept for `ok()`/`fails()` messages.
        let _ = args;
        self
    }
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    pub fn fails_with(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit code {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Org {
    /// The example organisation, prepared (nothing imported yet), on SQLite.
    pub fn new() -> Org {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("acme");
        let o = Command::new(BIN)
            .args(["demo", "--prepare-only", "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let database = format!("sqlite:{}", dir.join("tenure.db").display());
        Org {
            _tmp: tmp,
            dir,
            database,
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config")
            .arg(self.dir.join("config"))
            .arg("--database")
            .arg(&self.database);
        c.args(args);
        c.env_remove("TENURE_NOW").env("TENURE_ACTOR", "cli:tester");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let o = self.command(args).output().unwrap();
        Run::from(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), o)
    }

    /// Imports the organisation's file `file` as of `now`; it must succeed.
    pub fn import(&self, now: &str, file: &str) -> Run {
        let path = self.path(file);
        self.run(&["--now", now, "import", path.to_str().unwrap()])
            .ok()
    }

    /// Number of operations `plan --json` would do now.
    pub fn pending_operations(&self, now: &str) -> usize {
        let r = self.run(&["--now", now, "plan", "--json"]).ok();
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["operations"].as_array().unwrap().len()
    }

    pub fn audit(&self) -> Vec<serde_json::Value> {
        let r = self.run(&["audit", "export"]).ok();
        r.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A moment on the lifecycle clock of the service tests.
pub fn at(y: i32, m: u32, d: u32, h: u32) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

impl Org {
    /// An engine on this organisation whose lifecycle and wall clocks are
    /// both `clock` (leases and backoff move with the test's time).
    pub async fn engine(
        &self,
        clock: &std::sync::Arc<tenure_engine::FixedClock>,
    ) -> tenure_engine::Engine {
        let mut engine = tenure_engine::Engine::open(
            &self.path("config"),
            &self.database,
            clock.clone(),
            "service:test".to_owned(),
        )
        .await
        .unwrap();
        engine.wall = clock.clone();
        engine
    }
}

/// How many operations a full plan would make now (0: converged).
pub async fn full_plan_ops(engine: &tenure_engine::Engine) -> usize {
    engine
        .plan(&tenure_engine::NoProgress)
        .await
        .unwrap()
        .plan
        .operations
        .len()
}
