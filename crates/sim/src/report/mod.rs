//! A scenario's output: a Markdown report, CSV tables and SVG plots, written together to
//! one directory. Everything in it follows from the scenario's arguments, so two runs
//! with the same arguments write the same bytes; wall-clock figures belong in a separate
//! `timing.*` file, which the caller writes.

pub mod plot;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The name of the Markdown file in a report directory.
pub const REPORT_FILE: &str = "report.md";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    markdown: String,
    /// Other files (CSV, SVG) by name.
    files: BTreeMap<String, String>,
}

impl Report {
    pub fn new(title: &str) -> Self {
        Self {
            markdown: format!("# {title}\n"),
            files: BTreeMap::new(),
        }
    }

    pub fn heading(&mut self, text: &str) {
        let _ = write!(self.markdown, "\n## {text}\n");
    }

    pub fn subheading(&mut self, text: &str) {
        let _ = write!(self.markdown, "\n### {text}\n");
    }

    /// A paragraph.
    pub fn text(&mut self, text: &str) {
        let _ = write!(self.markdown, "\n{}\n", text.trim_end());
    }

    /// A fenced code block.
    pub fn code(&mut self, text: &str) {
        let _ = write!(self.markdown, "\n```\n{}\n```\n", text.trim_end());
    }

    pub fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) {
        self.markdown.push('\n');
        self.markdown.push_str(&table(headers, rows));
    }

    /// Adds `name` (a `.csv` file) with these rows, and a link to it.
    pub fn csv(&mut self, name: &str, headers: &[&str], rows: &[Vec<String>]) {
        let mut out = headers.join(",");
        out.push('\n');
        for row in rows {
            out.push_str(&row.join(","));
            out.push('\n');
        }
        self.files.insert(name.to_string(), out);
        let _ = write!(self.markdown, "\nData: [{name}]({name})\n");
    }

    /// Adds `name` (an `.svg` file) and shows it.
    pub fn plot(&mut self, name: &str, alt: &str, svg: String) {
        self.files.insert(name.to_string(), svg);
        let _ = write!(self.markdown, "\n![{alt}]({name})\n");
    }

    pub fn markdown(&self) -> &str {
        &self.markdown
    }

    /// Every file of the report, the Markdown first, then the rest by name.
    pub fn files(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::once((REPORT_FILE, self.markdown.as_str()))
            .chain(self.files.iter().map(|(n, c)| (n.as_str(), c.as_str())))
    }

    /// Writes every file into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, content) in self.files() {
            std::fs::write(dir.join(name), content)?;
        }
        Ok(())
    }

    /// Appends `other`'s Markdown (under this report's headings) and takes its files.
    pub fn append(&mut self, other: Report) {
        let body = other
            .markdown
            .split_once('\n')
            .map_or("", |(_, rest)| rest)
            .to_string();
        self.markdown.push_str(&body);
        self.files.extend(other.files);
    }
}

/// A Markdown table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", headers.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(headers.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

/// `x` with `decimals` decimals: the one way numbers are printed in reports, so the
/// bytes are stable.
pub fn fixed(x: f64, decimals: usize) -> String {
    format!("{x:.decimals$}")
}

/// A fraction as a percentage with one decimal.
pub fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_markdown_first_and_links_its_files() {
        let mut r = Report::new("T");
        r.csv("a.csv", &["x", "y"], &[vec!["1".into(), "2".into()]]);
        r.plot("a.svg", "a plot", "<svg/>".into());
        let names: Vec<&str> = r.files().map(|(n, _)| n).collect();
        assert_eq!(names, [REPORT_FILE, "a.csv", "a.svg"]);
        assert!(r.markdown().contains("![a plot](a.svg)"));
        assert_eq!(r.files().nth(1).map(|f| f.1), Some("x,y\n1,2\n"));
    }
}
