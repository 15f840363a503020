//! The page skeleton: escaping, tables, sections with a table of contents, and the style sheet.
//! Everything is static HTML and CSS, so the page works from `file://` with no network.
use std::fmt::Write;

/// The strings of a JSON array (e.g. network names), escaped and comma-separated; empty when
/// `v` is not an array.
pub fn escaped_list(v: &serde_json::Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(serde_json::Value::as_str)
                .map(escape)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Text made safe for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A table whose cells are already HTML.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let marked: Vec<(bool, Vec<String>)> = rows.iter().map(|r| (false, r.clone())).collect();
    table_marking(headers, &marked)
}

/// A table whose cells are already HTML, the rows flagged `true` highlighted.
pub fn table_marking(headers: &[&str], rows: &[(bool, Vec<String>)]) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for (marked, row) in rows {
        out.push_str(if *marked {
            "<tr class=\"chosen\">"
        } else {
            "<tr>"
        });
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A two-column table of names and HTML values.
pub fn facts(rows: &[(&str, String)]) -> String {
    let mut out = String::from("<table class=\"facts\"><tbody>");
    for (name, value) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{value}</td></tr>", escape(name));
    }
    out.push_str("</tbody></table>");
    out
}

/// A paragraph of escaped text in the muted style.
pub fn note(text: &str) -> String {
    format!("<p class=\"note\">{}</p>", escape(text))
}

/// How much a health hint matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Good,
    Info,
    Warning,
    Bad,
}

impl Level {
    fn class(self) -> &'static str {
        match self {
            Level::Good => "good",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Bad => "bad",
        }
    }

    fn mark(self) -> &'static str {
        match self {
            Level::Good => "ok",
            Level::Info => "note",
            Level::Warning => "check",
            Level::Bad => "problem",
        }
    }
}

/// The at-a-glance list: one line of escaped text per hint.
pub fn hints(hints: &[(Level, String)]) -> String {
    let mut out = String::from("<ul class=\"hints\">");
    for (level, text) in hints {
        let _ = write!(
            out,
            "<li class=\"{}\"><span class=\"mark\">{}</span> {}</li>",
            level.class(),
            level.mark(),
            escape(text)
        );
    }
    out.push_str("</ul>");
    out
}

/// A page being assembled: sections in order, listed in a table of contents at the top.
pub struct Page {
    title: String,
    subtitle: String,
    /// Seconds after which the browser reloads the page (a run still training).
    refresh_s: Option<u32>,
    sections: Vec<(String, String, String)>,
}

impl Page {
    pub fn new(title: &str, subtitle: String, refresh_s: Option<u32>) -> Self {
        Page {
            title: title.to_string(),
            subtitle,
            refresh_s,
            sections: Vec::new(),
        }
    }

    /// Appends a section; `id` is its anchor, `body` is HTML.
    pub fn section(&mut self, id: &str, heading: &str, body: String) {
        self.sections
            .push((id.to_string(), heading.to_string(), body));
    }

    pub fn finish(self) -> String {
        let mut out =
            String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        if let Some(s) = self.refresh_s {
            let _ = writeln!(out, "<meta http-equiv=\"refresh\" content=\"{s}\">");
        }
        let _ = writeln!(out, "<title>{}</title>", escape(&self.title));
        let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
        let _ = writeln!(
            out,
            "<header><h1>{}</h1><p class=\"note\">{}</p><nav>",
            escape(&self.title),
            self.subtitle
        );
        for (id, heading, _) in &self.sections {
            let _ = write!(out, "<a href=\"#{id}\">{}</a>", escape(heading));
        }
        out.push_str("</nav></header>\n<main>\n");
        for (id, heading, body) in &self.sections {
            let _ = writeln!(
                out,
                "<section id=\"{id}\">\n<h2>{}</h2>\n{body}\n</section>",
                escape(heading)
            );
        }
        out.push_str("</main>\n</body>\n</html>\n");
        out
    }
}

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0; color: #1d232b; background: #f4f5f7; }
header { background: #1d232b; color: #f4f5f7; padding: 16px 24px 10px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .note { color: #b7bec8; }
header a { color: #9cc7ff; }
nav { margin-top: 8px; }
nav a { color: #9cc7ff; margin-right: 14px; text-decoration: none; font-size: 14px; }
main { max-width: 1120px; margin: 0 auto; padding: 8px 24px 48px; }
section { background: #fff; border-radius: 6px; padding: 12px 20px 16px; margin: 16px 0; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
h2 { font-size: 18px; margin: 4px 0 10px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
table { border-collapse: collapse; font-size: 14px; margin: 6px 0; }
th, td { text-align: left; padding: 3px 10px; border-bottom: 1px solid #e4e7eb; vertical-align: top; }
thead th { background: #f0f2f5; }
table.facts th { width: 180px; color: #4b5563; font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; text-align: right; }
tr.chosen td { background: #e8f6ec; font-weight: 600; }
.badge { display: inline-block; background: #1f9d55; color: #fff; border-radius: 3px; padding: 0 6px; font-size: 12px; }
.note { color: #5b6470; font-size: 13px; margin: 4px 0; }
ul.hints { list-style: none; padding: 0; margin: 4px 0 12px; }
ul.hints li { padding: 4px 8px; margin: 3px 0; border-left: 4px solid; border-radius: 2px; font-size: 14px; }
ul.hints .mark { font-weight: 700; text-transform: uppercase; font-size: 11px; margin-right: 4px; }
li.good { border-color: #1f9d55; background: #effaf3; }
li.info { border-color: #6b7a8f; background: #f4f6f9; }
li.warning { border-color: #d69e2e; background: #fdf8ec; }
li.bad { border-color: #d64545; background: #fdeeee; }
svg { max-width: 100%; height: auto; display: block; margin: 6px 0; }
.strip { display: flex; gap: 10px; overflow-x: auto; padding-bottom: 8px; }
.strip figure { margin: 0; flex: none; text-align: center; }
.strip img { height: 168px; image-rendering: pixelated; border: 1px solid #d5d9df; background: #fff; }
.strip figcaption { font-size: 12px; color: #4b5563; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; }
code { font-size: 13px; }
";
