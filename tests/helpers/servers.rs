//! Throwaway redis-server and PostgreSQL instances on free loopback ports, in temp dirs, stopped
//! when dropped.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::wait::wait_for_blocking;

/// Where everything a test writes goes; removed on success, kept (and printed) on failure.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("mcp-{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A loopback port that is free now, for servers that cannot report the port they bind
/// (`redis-server --port 0` turns TCP off; PostgreSQL and the tools we drive take a port).
/// Our own binaries bind port 0 and report theirs instead.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn missing(binary: &str) -> ! {
    panic!(
        "{binary} is not installed; run the tests with ./scripts/test.sh, which installs it \
         (redis-server and postgresql from Debian packages)"
    )
}

fn wait_port(port: u16, what: &str) {
    wait_for_blocking(
        &format!("{what} to open port {port}"),
        Duration::from_secs(30),
        || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|e| e.to_string())
        },
    );
}

pub struct Redis {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        let dir = TempDir::new("redis");
        let mut redis = Self {
            port: free_port(),
            dir,
            child: None,
        };
        redis.spawn();
        redis
    }

    /// A server without any persistence (what the BullMQ comparison runs on).
    #[allow(
        dead_code,
        reason = "used by the engine benchmark, not by the black-box tests"
    )]
    pub fn start_without_persistence() -> Self {
        let mut redis = Self {
            port: free_port(),
            dir: TempDir::new("redis"),
            child: None,
        };
        redis.spawn_with(&["--appendonly", "no"]);
        redis
    }

    /// Starts (or restarts) the server with append-only persistence, so a restart keeps data.
    pub fn spawn(&mut self) {
        self.spawn_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    }

    fn spawn_with(&mut self, persistence: &[&str]) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(persistence)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|_| missing("redis-server"));
        self.child = Some(child);
        wait_port(self.port, "redis-server");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the server.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Deletes what a stopped server persisted, so the next [`Redis::spawn`] starts empty, as
    /// after losing the machine it ran on.
    #[allow(dead_code, reason = "used by the recovery tests and benchmark only")]
    pub fn wipe(&mut self) {
        assert!(
            self.child.is_none(),
            "stop the server before wiping its data"
        );
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let path = entry.path();
            if path.file_name() == Some("redis.log".as_ref()) {
                continue;
            }
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL cluster made with initdb and run with pg_ctl as an unprivileged user.
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: TempDir,
    run_as: Option<String>,
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| missing("PostgreSQL (initdb)"))
}

impl Postgres {
    /// A throwaway cluster; `durable` keeps `fsync` on (the tests turn it off for speed).
    pub fn start(durable: bool) -> Self {
        let bin = pg_bin();
        let dir = TempDir::new("pg");
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        // PostgreSQL refuses to run as root.
        let run_as = is_root.then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let ok = Command::new("chown")
                .args(["-R", user])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown of the PostgreSQL dir to {user} failed");
        }
        let pg = Self {
            port: free_port(),
            bin,
            dir,
            run_as,
        };
        let data = pg.dir.path().join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
            pg.port,
            pg.dir.path().display(),
            if durable { "on" } else { "off" }
        );
        let log = pg.dir.path().join("pg.log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        wait_port(pg.port, "postgres");
        pg
    }

    /// The postmaster's pid (its backends are its children), from the data directory.
    #[allow(dead_code, reason = "used by the benchmarks' cost figures")]
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|_| missing("PostgreSQL"));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs one SQL statement against `url` and returns the unaligned, tuples-only output.
    pub fn query(&self, url: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([url, "-At", "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A fresh database in this cluster.
    pub fn create_database(&self) -> String {
        let name = format!("mcp_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-c",
            ])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let exe = self.bin.join("pg_ctl");
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let _ = cmd
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// An S3-compatible server (moto, from PyPI) on a free loopback port, with one bucket.
pub struct S3 {
    pub port: u16,
    pub bucket: String,
    _dir: TempDir,
    child: Child,
}

impl S3 {
    pub async fn start(bucket: &str) -> Self {
        let dir = TempDir::new("s3");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
        let child = python_module("moto.server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("moto.server starts");
        wait_port(port, "moto S3 server");
        let s3 = Self {
            port,
            bucket: bucket.into(),
            _dir: dir,
            child,
        };
        let resp = reqwest::Client::new()
            .put(format!("{}/{bucket}", s3.endpoint()))
            .send()
            .await
            .expect("create the bucket");
        assert!(
            resp.status().is_success(),
            "bucket not created: {}",
            resp.status()
        );
        s3
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment that points the application at this server.
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            (
                "MCP_ARTIFACT_STORE",
                format!("s3://{}/{prefix}", self.bucket),
            ),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The stored bytes of the object `key`, when an anonymous GET may read it (moto refuses
    /// some, such as `*.json` objects).
    #[allow(dead_code)]
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let resp = reqwest::Client::new()
            .get(format!("{}/{}/{key}", self.endpoint(), self.bucket))
            .send()
            .await
            .unwrap();
        if !resp.status().is_success() {
            return None;
        }
        Some(resp.bytes().await.unwrap().to_vec())
    }

    /// Keys in the bucket under `prefix` (S3 ListObjectsV2).
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let xml = reqwest::Client::new()
            .get(format!(
                "{}/{}?list-type=2&prefix={prefix}",
                self.endpoint(),
                self.bucket
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The Python tools the tests drive (moto, schemathesis, kubernetes-validate) run from the
// project's own virtual environment, which `./scripts/test.sh` fills from `tests/requirements.txt`.

/// The virtual environment: `MCP_TEST_VENV` as the test script exports it, else its default place.
fn venv() -> PathBuf {
    std::env::var_os("MCP_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .join("target/test-venv")
        })
}

/// The test environment's Python; panics with the way to get it when it is missing.
fn python() -> Command {
    let python = venv().join("bin/python");
    assert!(
        python.exists(),
        "{} does not exist: run the tests with ./scripts/test.sh, which creates it and installs \
         the Python tools from tests/requirements.txt",
        python.display()
    );
    Command::new(python)
}

/// `python -m <module>` in the test environment.
pub fn python_module(module: &str) -> Command {
    let mut cmd = python();
    cmd.args(["-m", module]);
    cmd
}

/// `python <script>` in the test environment.
pub fn python_script(script: &Path) -> Command {
    let mut cmd = python();
    cmd.arg(script);
    cmd
}
