//! The text log's line format, with a fast path for the access log.
//!
//! With the access log on, every request formats one line. tracing-
//! subscriber's default formatter writes each field through `fmt::Debug`
//! and `format_args!`, which `berth bench --instructions` priced at about
//! 15,000 instructions per access line: a sixth of a whole manifest pull.
//! [`Text`] writes access-log lines (target [`ACCESS_TARGET`], no span, no
//! ANSI colours) itself, with `itoa`, `ryu` and `humantime`, into exactly
//! the layout the default formatter gives them (a test compares the two);
//! every other line goes to the default formatter unchanged.
//!
//! [`AccessLines`] goes further: the server hands it each request's
//! fields ([`AccessSink`]) instead of emitting a `tracing` event, and it
//! writes the same line without `tracing`'s dispatch and field visitors,
//! with the timestamp's date and time formatted once a second.

use std::fmt;

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_server::observe::{AccessLine, AccessSink, ACCESS_TARGET};

use crate::log_writer::BatchedWriter;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The text format: see the module documentation.
#[derive(Default)]
pub struct Text {
    default: Format<Full>,
}

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if meta.target() != ACCESS_TARGET
            || writer.has_ansi_escapes()
            || ctx.lookup_current().is_some()
        {
            return self.default.format_event(ctx, writer, event);
        }
        write!(
            writer,
            "{} {} {}: ",
            humantime::format_rfc3339_micros(std::time::SystemTime::now()),
            level(meta.level()),
            meta.target()
        )?;
        let mut fields = Fields {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// Writes access-log lines straight into the log's buffer: see the module
/// documentation. Only for the text format without ANSI colours.
pub struct AccessLines {
    writer: BatchedWriter,
}

impl AccessLines {
    pub fn new(writer: BatchedWriter) -> AccessLines {
        AccessLines { writer }
    }
}

/// A thread's line buffer, and its clock: the second last formatted and
/// its `YYYY-MM-DDTHH:MM:SS.` prefix.
struct Scratch {
    line: String,
    second: u64,
    prefix: String,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch { line: String::new(), second: u64::MAX, prefix: String::new() })
    };
}

impl AccessSink for AccessLines {
    fn write(&self, l: &AccessLine<'_>) {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let s = &mut *s;
            s.line.clear();
            timestamp(&mut s.line, &mut s.second, &mut s.prefix);
            format_access(&mut s.line, l);
            self.writer.append(s.line.as_bytes(), false);
        });
    }
}

/// Appends the current time as `humantime::format_rfc3339_micros` writes
/// it, reusing the date and time of day within one second.
fn timestamp(out: &mut String, second: &mut u64, prefix: &mut String) {
    let now = SystemTime::now();
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    if since.as_secs() != *second {
        *second = since.as_secs();
        prefix.clear();
        // `2026-11-30T17:12:28Z`: keep all but the `Z`.
        let whole = humantime::format_rfc3339_seconds(now).to_string();
        prefix.push_str(whole.strip_suffix('Z').unwrap_or(&whole));
        prefix.push('.');
    }
    out.push_str(prefix);
    let mut digits = itoa::Buffer::new();
    let micros = digits.format(since.subsec_micros());
    for _ in micros.len()..6 {
        out.push('0');
    }
    out.push_str(micros);
    out.push('Z');
}

/// Appends everything after the timestamp, as [`Text`] writes the
/// `tracing` event of `berth_server::observe` (a test compares the two).
fn format_access(out: &mut String, l: &AccessLine<'_>) {
    // The separator, then the level padded to five as `level` pads it.
    out.push_str("  INFO ");
    out.push_str(ACCESS_TARGET);
    // The method and the route are labels from fixed sets of plain
    // strings (`observe::method_label`, `observe::template`).
    out.push_str(": request method=\"");
    out.push_str(l.method);
    out.push_str("\" route=\"");
    out.push_str(l.route);
    out.push('"');
    if let Some(r) = l.repository {
        out.push_str(" repository=");
        quoted(out, r);
    }
    out.push_str(" status=");
    out.push_str(itoa::Buffer::new().format(l.status));
    out.push_str(" bytes_in=");
    out.push_str(itoa::Buffer::new().format(l.bytes_in));
    out.push_str(" bytes_out=");
    out.push_str(itoa::Buffer::new().format(l.bytes_out));
    out.push_str(" duration_ms=");
    out.push_str(ryu::Buffer::new().format(l.duration.as_secs_f64() * 1000.0));
    if let Some(ip) = l.client {
        out.push_str(" client=");
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().iter().enumerate() {
                    if i > 0 {
                        out.push('.');
                    }
                    out.push_str(itoa::Buffer::new().format(*octet));
                }
            }
            std::net::IpAddr::V6(v6) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{v6}");
            }
        }
    }
    if let Some(a) = l.account {
        out.push_str(" account=");
        quoted(out, a);
    }
    out.push('\n');
}

/// A string quoted as `Debug` quotes it.
fn quoted(out: &mut String, value: &str) {
    if plain(value) {
        out.push('"');
        out.push_str(value);
        out.push('"');
    } else {
        use std::fmt::Write as _;
        let _ = write!(out, "{value:?}");
    }
}

/// Whether `Debug` writes `value` as it is between its quotes.
fn plain(value: &str) -> bool {
    value
        .bytes()
        .all(|b| matches!(b, b' '..=b'!' | b'#'..=b'[' | b']'..=b'~'))
}

/// A level as the default formatter pads it.
fn level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// Writes fields as the default formatter does: the message as it is, then
/// ` name=value`, strings quoted and escaped as `Debug` quotes them.
struct Fields<'w, 'a> {
    out: &'w mut Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn name(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.out.write_char(' ')?;
        }
        if field.name() == "message" {
            return Ok(());
        }
        let name = field.name();
        self.out
            .write_str(name.strip_prefix("r#").unwrap_or(name))?;
        self.out.write_char('=')
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = self.name(field).and_then(|()| value(self.out));
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let message = field.name() == "message";
        self.put(field, |w| {
            if message {
                w.write_str(value)
            } else if plain(value) {
                // What `Debug` writes for a string it need not escape,
                // without its char-by-char escape checks.
                w.write_char('"')?;
                w.write_str(value)?;
                w.write_char('"')
            } else {
                write!(w, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // `ryu` writes the shortest form that reads back as `value`, as
        // `Debug` does, in the range a duration takes.
        self.put(field, |w| w.write_str(ryu::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |w| write!(w, "{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        }
    }

    /// The events of a request's access-log line, and one other line.
    fn emit() {
        let client: std::net::IpAddr = [10, 0, 3, 7].into();
        let account: Option<&str> = Some("ci-bot");
        tracing::info!(
            target: ACCESS_TARGET,
            method = "GET",
            route = "/v2/{name}/manifests/{reference}",
            repository = Some("acme/app \"quoted\""),
            status = 200u16,
            bytes_in = 0u64,
            bytes_out = 1021u64,
            duration_ms = 1.93f64,
            client = Some(tracing::field::display(client)),
            account,
            // Not plain ASCII: escaped as `Debug` escapes it.
            note = "zoë\tdone\u{7}",
            "request"
        );
        let none: Option<&str> = None;
        tracing::info!(
            target: ACCESS_TARGET,
            method = "PUT",
            repository = none,
            duration_ms = 12.0f64,
            delta = -3i64,
            ok = true,
            "request"
        );
        tracing::warn!(target: "berth::serve", answer = 42u64, "something else");
    }

    fn lines(fast: bool) -> Vec<String> {
        let buf = Buf::default();
        let writer = buf.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone());
        if fast {
            tracing::subscriber::with_default(builder.event_format(Text::default()).finish(), emit);
        } else {
            tracing::subscriber::with_default(builder.finish(), emit);
        }
        buf.text()
            .lines()
            .map(|l| {
                // The timestamps differ; everything after them must not.
                let (time, rest) = l.split_once(' ').unwrap_or_default();
                assert!(
                    time.ends_with('Z') && time.len() == 27,
                    "timestamp {time:?}"
                );
                rest.to_owned()
            })
            .collect()
    }

    /// The line `berth_server::observe` emits as a `tracing` event, with
    /// the values of `l`.
    fn emit_as_observe_does(l: &AccessLine<'_>) {
        tracing::info!(
            target: ACCESS_TARGET,
            method = l.method,
            route = l.route,
            repository = l.repository,
            status = l.status,
            bytes_in = l.bytes_in,
            bytes_out = l.bytes_out,
            duration_ms = l.duration.as_secs_f64() * 1000.0,
            client = l.client.map(tracing::field::display),
            account = l.account,
            "request"
        );
    }

    #[test]
    fn the_access_sink_writes_what_the_default_formatter_writes() {
        let v6: std::net::IpAddr = "2001:db8::7".parse().unwrap();
        let lines = [
            AccessLine {
                method: "GET",
                route: "/v2/{name}/manifests/{reference}",
                repository: Some("acme/app"),
                status: 200,
                bytes_in: 0,
                bytes_out: 1021,
                duration: std::time::Duration::from_micros(1930),
                client: Some([10, 0, 3, 7].into()),
                account: Some("ci-bot"),
            },
            AccessLine {
                method: "PATCH",
                route: "/v2/{name}/blobs/uploads/{uuid}",
                repository: Some("zoë/\"q\"\t"),
                status: 416,
                bytes_in: 8_388_608,
                bytes_out: 0,
                duration: std::time::Duration::from_nanos(123_456_789),
                client: Some(v6),
                account: None,
            },
            AccessLine {
                method: "OTHER",
                route: "{unknown}",
                repository: None,
                status: 404,
                bytes_in: 0,
                bytes_out: 0,
                duration: std::time::Duration::ZERO,
                client: None,
                account: Some(""),
            },
        ];
        for l in &lines {
            let buf = Buf::default();
            let writer = buf.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || emit_as_observe_does(l));
            let default = buf.text();
            let (_, default) = default.split_once(' ').unwrap_or_default();
            let mut ours = String::new();
            let (mut second, mut prefix) = (u64::MAX, String::new());
            timestamp(&mut ours, &mut second, &mut prefix);
            let time = ours.clone();
            format_access(&mut ours, l);
            // `default` is what follows the separator after the timestamp.
            assert_eq!(&ours[time.len() + 1..], default, "{l:?}");
            // The timestamp as humantime writes it, to the second.
            assert!(time.ends_with('Z') && time.len() == 27, "{time:?}");
            let now = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
            assert_eq!(time[..17], now[..17], "{time} vs {now}");
        }
    }

    #[test]
    fn plain_ascii_strings_are_exactly_those_debug_leaves_alone() {
        for c in (0u8..=0x7f).map(char::from) {
            let s = format!("a{c}b");
            assert_eq!(plain(&s), format!("{s:?}") == format!("\"{s}\""), "{c:?}");
        }
        // Anything else goes through `Debug` itself.
        assert!(!plain("é") && !plain("\u{2028}"));
    }

    #[test]
    fn the_cached_second_is_refreshed_when_the_second_changes() {
        let (mut second, mut prefix) = (u64::MAX, String::new());
        let mut a = String::new();
        timestamp(&mut a, &mut second, &mut prefix);
        // A stale cache (an earlier second) must not be reused.
        second -= 5;
        prefix = "1999-01-01T00:00:00.".to_owned();
        let mut b = String::new();
        timestamp(&mut b, &mut second, &mut prefix);
        assert!(b.starts_with("20"), "{b}");
        assert_eq!(a[..17], b[..17]);
    }

    #[test]
    fn access_lines_are_written_as_the_default_formatter_writes_them() {
        let (fast, default) = (lines(true), lines(false));
        assert_eq!(fast.len(), 3, "{fast:?}");
        assert_eq!(fast, default);
        assert!(
            fast[0].contains("repository=\"acme/app \\\"quoted\\\"\""),
            "{}",
            fast[0]
        );
        assert!(
            fast[0].contains("duration_ms=1.93 client=10.0.3.7"),
            "{}",
            fast[0]
        );
    }
}
