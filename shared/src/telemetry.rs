//! One tracing setup shared by every binary: human-readable logs in development, JSON in production.
//!
//! Every formatted event passes through [`sanitize::sanitize`] before it is written, so personal data
//! and credentials that reach a log statement anyway (in an error message, a URL, a field someone
//! added while debugging) come out as `[EMAIL]`, `[JWT]`, `password=[REDACTED]`… The platform
//! handles health-related conversations: the logs are shipped and kept far longer, and read by
//! far more people, than the data they describe. Panic messages go through the same sanitiser.
//!
//! Cost: a line with nothing to hide is scanned, not copied or allocated. A 221-byte line with
//! two spans and UUIDs took 5 µs with `mcp-shared` optimised and its dependencies at the dev
//! profile's `opt-level = 1` (1.6 µs of it the PII detector) on the 2-core CI machine kind;
//! `sanitizing_a_clean_line_is_cheap` prints the figure for the build at hand.

use std::{
    borrow::Cow,
    io::{self, IsTerminal, Write},
    sync::Once,
};

use tracing_subscriber::{
    EnvFilter,
    fmt::{self, MakeWriter},
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

use crate::sanitize;

/// Installs the global subscriber. `RUST_LOG` overrides the default filter. Safe to call twice
/// (the second call does nothing), which keeps tests simple.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,apalis=warn,rmcp=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_target(true)
                    .with_writer(Sanitizing::new(io::stdout, Format::Json)),
            )
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_target(false)
                    // Colour codes in a file would also split `password=` from its value.
                    .with_ansi(io::stdout().is_terminal())
                    .with_writer(Sanitizing::new(io::stdout, Format::Text)),
            )
            .try_init()
    };
    let _ = result;
    install_panic_hook();
}

/// Text to be printed outside the logger (a fatal error on the way out): the same redaction as
/// log lines.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    sanitize::sanitize(text)
}

/// The default hook prints the panic message, which may quote the data being processed
/// (`called unwrap() on … "ann@example.org"`): this one prints the same, sanitised.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("<unnamed>");
            let text = format!("thread '{name}' {info}");
            let backtrace = std::backtrace::Backtrace::capture();
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "{}", sanitize::sanitize(&text));
            if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
                let _ = writeln!(err, "{}", sanitize::sanitize(&backtrace.to_string()));
            } else {
                let _ = writeln!(
                    err,
                    "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
                );
            }
        }));
    });
}

/// How the formatter renders an event, which decides how a redaction is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    /// One JSON object per line: a redaction is applied to the parsed values, so the line stays
    /// valid JSON whatever the match spanned.
    Json,
}

/// A [`MakeWriter`] that sanitises each formatted event before handing it to `inner`.
#[derive(Debug, Clone)]
pub struct Sanitizing<M> {
    inner: M,
    format: Format,
}

impl<M> Sanitizing<M> {
    pub fn new(inner: M, format: Format) -> Self {
        Self { inner, format }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Sanitizing<M> {
    type Writer = EventWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            inner: self.inner.make_writer(),
            format: self.format,
            pending: Vec::new(),
        }
    }
}

/// Writes one event. The formatter hands over a whole event in one `write`, which is sanitised
/// and passed on at once without copying; anything written in pieces is collected and sanitised
/// as a whole when the writer is dropped, so a secret split across two writes is still found.
pub struct EventWriter<W: Write> {
    inner: W,
    format: Format,
    pending: Vec<u8>,
}

impl<W: Write> EventWriter<W> {
    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(bytes);
        match clean_event(&text, self.format) {
            Cow::Borrowed(t) => self.inner.write_all(t.as_bytes()),
            Cow::Owned(t) => self.inner.write_all(t.as_bytes()),
        }
    }
}

impl<W: Write> Write for EventWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.is_empty() && buf.ends_with(b"\n") {
            self.emit(buf)?;
        } else {
            self.pending.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for EventWriter<W> {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let _ = self.emit(&pending);
        }
    }
}

/// One formatted event (possibly several lines), sanitised.
fn clean_event(text: &str, format: Format) -> Cow<'_, str> {
    let clean = sanitize::sanitize(text);
    if format == Format::Text || matches!(clean, Cow::Borrowed(_)) {
        return clean;
    }
    // A match in the raw JSON may have spanned an escape or a quote: redact the decoded values
    // instead, and encode again.
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        match serde_json::from_str::<serde_json::Value>(body) {
            Ok(mut value) => {
                sanitize::sanitize_json(&mut value);
                out.push_str(&value.to_string());
            }
            // Not JSON after all (cannot happen with the JSON formatter): the text redaction.
            Err(_) => out.push_str(&sanitize::sanitize(body)),
        }
        out.push_str(&line[body.len()..]);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Instant,
    };

    use super::*;

    /// Collects what the logger writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn log_everything() {
        let key = format!(
            "{}Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg",
            crate::domain::agent::AGENT_KEY_PREFIX
        );
        tracing::info!(user = "ann.lee@example.org", "login succeeded");
        tracing::warn!(error = %format!("decode failed for \"{JWT}\""), "token rejected");
        tracing::info!(
            password = "hunter2-canary",
            db = "postgres://mcp:pg-canary-pw@db.internal:5432/mcp",
            "config"
        );
        tracing::info!(payload = %r#"{"ssn":"123-45-6789","api_key":"sk-canary0123456789abcdef"}"#, "payload");
        tracing::info!(header = %format!("Agent {key}"), card = "4111 1111 1111 1111", "request");
        tracing::info!(
            task_id = "0193a5b2-7c1d-7e2f-8a3b-4c5d6e7f8091",
            "task finished"
        );
    }

    const CANARIES: &[&str] = &[
        "ann.lee@example.org",
        "hunter2-canary",
        "pg-canary-pw",
        "123-45-6789",
        "sk-canary0123456789abcdef",
        "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg",
        "4111 1111 1111 1111",
        "dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    ];

    fn run(format: Format) -> String {
        let out = Capture::default();
        let sink = out.clone();
        let writer = Sanitizing::new(move || sink.clone(), format);
        let subscriber = tracing_subscriber::registry();
        match format {
            Format::Json => tracing::subscriber::with_default(
                subscriber.with(fmt::layer().json().with_writer(writer)),
                log_everything,
            ),
            Format::Text => tracing::subscriber::with_default(
                subscriber.with(fmt::layer().with_ansi(true).with_writer(writer)),
                log_everything,
            ),
        }
        out.text()
    }

    #[track_caller]
    fn assert_clean(logs: &str) {
        for canary in CANARIES {
            assert!(!logs.contains(canary), "{canary:?} leaked:\n{logs}");
        }
        // Not vacuous: ordinary fields survive.
        assert!(
            logs.contains("0193a5b2-7c1d-7e2f-8a3b-4c5d6e7f8091"),
            "{logs}"
        );
        assert!(logs.contains("login succeeded"), "{logs}");
        assert!(
            logs.contains("db.internal:5432"),
            "the URL's host is kept: {logs}"
        );
    }

    #[test]
    fn text_logs_carry_no_pii_or_secret() {
        let logs = run(Format::Text);
        assert_clean(&logs);
        assert!(logs.contains("[EMAIL]") && logs.contains("[JWT]"), "{logs}");
    }

    #[test]
    fn json_logs_carry_no_pii_or_secret_and_stay_json() {
        let logs = run(Format::Json);
        assert_clean(&logs);
        for line in logs.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON after redaction ({e}): {line}"));
            assert!(v.get("fields").is_some(), "{line}");
        }
        assert!(logs.contains(r#""password":"[REDACTED]""#), "{logs}");
    }

    #[test]
    fn pieces_are_sanitised_as_a_whole() {
        let out = Capture::default();
        let sink = out.clone();
        let writer = Sanitizing::new(move || sink.clone(), Format::Text);
        {
            let mut w = writer.make_writer();
            w.write_all(b"mail ann.lee@exa").unwrap();
            w.write_all(b"mple.org now\n").unwrap();
        }
        assert_eq!(out.text(), "mail [EMAIL] now\n");
    }

    /// Runs itself in a child process (the hook is process-wide) whose test panics with PII.
    #[test]
    fn panic_messages_are_sanitised() {
        const CHILD: &str = "MCP_TELEMETRY_PANIC_CHILD";
        if std::env::var_os(CHILD).is_some() {
            install_panic_hook();
            panic!("could not parse record of ann.lee@example.org with password=hunter2-canary");
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "telemetry::tests::panic_messages_are_sanitised",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the child panicked: {stderr}");
        assert!(
            stderr.contains("could not parse record of [EMAIL] with password=[REDACTED]"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("ann.lee@example.org") && !stderr.contains("hunter2-canary"),
            "{stderr}"
        );
    }

    #[test]
    fn sanitizing_a_clean_line_is_cheap() {
        let line = "2026-11-25T01:02:03.123456Z  INFO request{request_id=0193a5b2-7c1d-7e2f-8a3b-4c5d6e7f8091 method=POST path=/api/v1/tasks}: job{task_id=0193a5b2-7c1d-7e2f-8a3b-4c5d6e7f8092}: task finished status=completed elapsed_ms=3.25\n";
        assert!(matches!(clean_event(line, Format::Text), Cow::Borrowed(_)));
        let n = 20_000;
        // The patterns compile on first use: keep that out of the figure.
        let _ = clean_event(line, Format::Text);
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(clean_event(std::hint::black_box(line), Format::Text));
        }
        // Reported, not asserted: timings depend on the machine and its load.
        eprintln!(
            "sanitising a clean {}-byte log line: {:.2} µs",
            line.len(),
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
}
