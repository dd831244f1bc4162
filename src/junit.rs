//! The JUnit XML report of a `devloop check` (`--report FILE`): the schema Jenkins' `junit` step, GitHub
//! test reporters and GitLab's `artifacts:reports:junit` read. One `<testsuite>` per stage (build, rollout,
//! command; setup when the check failed outside them), one `<testcase>` per image, workload or command,
//! written from the check's record ([`Checked`]), never from its printed lines.
//!
//! The XML is written by hand: four elements and a handful of attributes do not need a crate, and the
//! escaping is the part that matters. Text and attribute values escape `&`, `<`, `>` (so `]]>` cannot end
//! anything) and quotes; characters XML 1.0 cannot hold at all, not even as references (control characters
//! other than tab, newline and carriage return, U+FFFE, U+FFFF), are written visibly as `\xNN` / `\u{FFFE}`,
//! so a command's colours or a NUL in its output never make the file unreadable.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::engine::checked::{Case, Checked, Stage, Verdict};

/// Writing the report failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file (or its temporary sibling) could not be written, or put in place.
    #[error("--report {path}: {source}")]
    Write {
        /// The report's path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The stages in the order their suites are written.
const STAGES: [Stage; 4] = [Stage::Build, Stage::Rollout, Stage::Command, Stage::Setup];

/// Seconds with milliseconds, as JUnit's `time` attributes want them.
fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// `s` made safe for XML text (`attr`: for a double-quoted attribute value, keeping its line breaks).
pub fn escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\'' if attr => out.push_str("&apos;"),
            // A raw line break or tab in an attribute would be read back as a space.
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#9;"),
            // Carriage returns are otherwise folded into newlines by parsers.
            '\r' => out.push_str("&#13;"),
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            '\u{fffe}' | '\u{ffff}' => {
                let _ = write!(out, "\\u{{{:X}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Counts of a set of cases: (tests, failures, errors, skipped).
fn counts<'a>(cases: impl Iterator<Item = &'a Case>) -> (usize, usize, usize, usize) {
    cases.fold((0, 0, 0, 0), |(t, f, e, s), c| match c.verdict {
        Verdict::Passed => (t + 1, f, e, s),
        Verdict::Failed(_) => (t + 1, f + 1, e, s),
        Verdict::Error(_) => (t + 1, f, e + 1, s),
        Verdict::Skipped(_) => (t + 1, f, e, s + 1),
    })
}

/// One `<testcase>`.
fn case(x: &mut String, c: &Case) {
    let _ = write!(
        x,
        "    <testcase classname=\"devloop.{}\" name=\"{}\" time=\"{}\"",
        c.stage.name(),
        escape(&c.name, true),
        seconds(c.time)
    );
    if c.verdict == Verdict::Passed && c.output.is_empty() {
        x.push_str("/>\n");
        return;
    }
    x.push_str(">\n");
    match &c.verdict {
        Verdict::Passed => {}
        Verdict::Failed(f) | Verdict::Error(f) => {
            let tag = if matches!(c.verdict, Verdict::Failed(_)) { "failure" } else { "error" };
            let _ = writeln!(
                x,
                "      <{tag} message=\"{}\" type=\"{}\">{}</{tag}>",
                escape(&f.message, true),
                escape(&f.kind, true),
                escape(&f.detail, false)
            );
        }
        Verdict::Skipped(why) => {
            let _ = writeln!(x, "      <skipped message=\"{}\"/>", escape(why, true));
        }
    }
    if !c.output.is_empty() {
        let _ = writeln!(x, "      <system-out>{}</system-out>", escape(&c.output, false));
    }
    x.push_str("    </testcase>\n");
}

/// The report's text.
pub fn render(checked: &Checked) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let (t, f, e, s) = counts(checked.cases.iter());
    let _ = writeln!(
        x,
        "<testsuites name=\"devloop check\" tests=\"{t}\" failures=\"{f}\" errors=\"{e}\" skipped=\"{s}\" time=\"{}\">",
        seconds(checked.time)
    );
    for stage in STAGES {
        let cases: Vec<&Case> = checked.cases.iter().filter(|c| c.stage == stage).collect();
        if cases.is_empty() {
            continue;
        }
        let (t, f, e, s) = counts(cases.iter().copied());
        let time: Duration = cases.iter().map(|c| c.time).sum();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{t}\" failures=\"{f}\" errors=\"{e}\" skipped=\"{s}\" time=\"{}\">",
            stage.name(),
            seconds(time)
        );
        if let Some(ns) = &checked.namespace {
            let _ = writeln!(x, "    <properties><property name=\"namespace\" value=\"{}\"/></properties>", escape(ns, true));
        }
        for c in cases {
            case(&mut x, c);
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// Whether `path` can be written: its directory exists. Said before the check starts, so that a typo does
/// not cost a whole check.
pub fn check_path(path: &Path) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.file_name().is_none() || !dir.is_dir() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} is not a directory", dir.display()));
        return Err(Error::Write { path: path.display().to_string(), source });
    }
    Ok(())
}

/// Writes the report to `path` whole or not at all: into a temporary file beside it, then renamed over it,
/// so a CI step reading it never sees half a file.
pub fn write(path: &Path, checked: &Checked) -> Result<(), Error> {
    let fail = |source| Error::Write { path: path.display().to_string(), source };
    let name = path.file_name().ok_or_else(|| fail(std::io::Error::other("not a file name")))?;
    let tmp = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(render(checked).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::checked::Failure;

    fn failure(kind: &str, message: &str, detail: &str) -> Failure {
        Failure { kind: kind.into(), message: message.into(), detail: detail.into() }
    }

    #[test]
    fn control_characters_and_cdata_ends_cannot_break_the_file() {
        let text = "\x1b[31mred\x1b[0m ]]> <b> & \"q\" 'a'\r\n\0\u{7f}\u{fffe}é\ttab";
        assert_eq!(
            escape(text, false),
            "\\x1b[31mred\\x1b[0m ]]&gt; &lt;b&gt; &amp; \"q\" 'a'&#13;\n\\x00\\x7f\\u{FFFE}é\ttab"
        );
        assert_eq!(escape("a\"b\nc\td<", true), "a&quot;b&#10;c&#9;d&lt;");
        let out: String = (0u8..0x20).map(char::from).collect();
        let escaped = escape(&out, false);
        assert!(escaped.chars().all(|c| c == '\n' || c == '\t' || !c.is_control()), "{escaped:?}");
    }

    #[test]
    fn times_are_seconds_with_milliseconds_and_suites_sum_their_cases() {
        assert_eq!(seconds(Duration::from_millis(1500)), "1.500");
        assert_eq!(seconds(Duration::from_micros(2_345_678)), "2.346");
        assert_eq!(seconds(Duration::ZERO), "0.000");
        let mut c = Checked::plan(&["web".into()], &["make test".into()]);
        c.add(Stage::Build, "web", Duration::from_millis(1200), Verdict::Passed, "pushed r@sha256:1\n".into());
        c.add(Stage::Rollout, "web: deployment/web", Duration::from_millis(300), Verdict::Passed, String::new());
        c.add(Stage::Command, "make test", Duration::from_millis(250), Verdict::Passed, "ok\n".into());
        c.close(None, Duration::from_millis(2000));
        let x = render(&c);
        assert!(x.contains("<testsuites name=\"devloop check\" tests=\"3\" failures=\"0\" errors=\"0\" skipped=\"0\" time=\"2.000\">"), "{x}");
        assert!(x.contains("<testsuite name=\"build\" tests=\"1\" failures=\"0\" errors=\"0\" skipped=\"0\" time=\"1.200\">"), "{x}");
        assert!(x.contains("<testcase classname=\"devloop.rollout\" name=\"web: deployment/web\" time=\"0.300\"/>"), "{x}");
        assert!(x.contains("<system-out>ok\n</system-out>"), "{x}");
    }

    #[test]
    fn failures_errors_and_skips_are_their_own_elements_with_counts() {
        let mut c = Checked::plan(&["web".into()], &["make test".into(), "make e2e".into()]);
        c.namespace = Some("devloop-check-0a1b2c3d".into());
        c.add(Stage::Build, "web", Duration::ZERO, Verdict::Passed, String::new());
        let crash = failure("CrashLoopBackOff", "CrashLoopBackOff (pod p): back-off", "CrashLoopBackOff (pod p)\nlast log lines:\npanic: <nil>");
        c.add(Stage::Rollout, "web: deployment/web", Duration::ZERO, Verdict::Failed(crash), String::new());
        c.close(None, Duration::ZERO);
        let x = render(&c);
        assert!(x.contains("<testsuite name=\"rollout\" tests=\"1\" failures=\"1\" errors=\"0\" skipped=\"0\""), "{x}");
        assert!(
            x.contains("<failure message=\"CrashLoopBackOff (pod p): back-off\" type=\"CrashLoopBackOff\">CrashLoopBackOff (pod p)\nlast log lines:\npanic: &lt;nil&gt;</failure>"),
            "{x}"
        );
        assert!(x.contains("<testsuite name=\"command\" tests=\"2\" failures=\"0\" errors=\"0\" skipped=\"2\""), "{x}");
        assert!(x.contains("name=\"make e2e\" time=\"0.000\">\n      <skipped message=\"not run: an earlier stage failed\"/>"), "{x}");
        assert!(x.contains("<property name=\"namespace\" value=\"devloop-check-0a1b2c3d\"/>"), "{x}");
        assert!(x.contains("tests=\"4\" failures=\"1\" errors=\"0\" skipped=\"2\""), "{x}");
    }

    #[test]
    fn the_file_is_replaced_whole_and_a_missing_directory_is_said_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        std::fs::write(&path, "old").unwrap();
        let c = Checked::plan(&[], &["true".into()]);
        write(&path, &c).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), render(&c));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["junit.xml"], "no temporary file is left");
        assert!(check_path(&path).is_ok());
        let e = check_path(&dir.path().join("nope/junit.xml")).unwrap_err().to_string();
        assert!(e.contains("nope is not a directory"), "{e}");
    }
}
