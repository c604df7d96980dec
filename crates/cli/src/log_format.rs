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

use std::fmt;

use berth_server::observe::ACCESS_TARGET;
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
            } else if value
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
            {
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
