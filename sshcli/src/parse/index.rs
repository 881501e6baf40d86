//! The template index: which template parses which platform's command.
//!
//! The format of the ntc-templates `index`: `#` comments and blank lines are skipped;
//! the first other line is the header naming the columns (`Template, Hostname,
//! Platform, Command`, in any order); each further line is a row. `Platform` and
//! `Command` are (Python-style) regexes matched at the start of the value, and in `Command` each
//! `[[abc]]` stands for an optional completion (`sh[[ow]]` matches `sh`, `sho`, `show`).
//! `Template` may list several files separated by `:`; only the first is used.

use std::collections::HashMap;
use std::sync::Arc;

use fancy_regex::Regex;

use super::{Error, Result, Template};

const TEMPLATE_COLUMN: &str = "Template";
const PLATFORM_COLUMN: &str = "Platform";
const COMMAND_COLUMN: &str = "Command";

/// One row of an index, compiled.
#[derive(Debug, Clone)]
pub(super) struct IndexRow {
    platform: Regex,
    command: Regex,
    pub(super) template: Arc<Template>,
}

impl IndexRow {
    pub(super) fn matches(&self, platform: &str, command: &str) -> bool {
        // An error is a regex that gave up (backtracking limit): no match.
        self.platform.is_match(platform).unwrap_or(false)
            && self.command.is_match(command).unwrap_or(false)
    }
}

/// Reads an index; `load` gives the text of a template file by name (`None`: no such
/// file). `origin` names the index in errors.
pub(super) fn parse_index(
    origin: &str,
    text: &str,
    mut load: impl FnMut(&str) -> Result<Option<String>>,
) -> Result<Vec<IndexRow>> {
    let fail = |line: usize, reason: String| Error::Index {
        origin: origin.to_owned(),
        line,
        reason,
    };
    let mut header: Option<(usize, usize, usize)> = None;
    let mut templates: HashMap<String, Arc<Template>> = HashMap::new();
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        let Some((t, p, c)) = header else {
            let find = |name: &str| {
                cells
                    .iter()
                    .position(|cell| *cell == name)
                    .ok_or_else(|| fail(line_no, format!("header has no {name} column")))
            };
            header = Some((
                find(TEMPLATE_COLUMN)?,
                find(PLATFORM_COLUMN)?,
                find(COMMAND_COLUMN)?,
            ));
            continue;
        };
        let cell = |index: usize, name: &str| {
            cells
                .get(index)
                .copied()
                .filter(|cell| !cell.is_empty())
                .ok_or_else(|| fail(line_no, format!("row has no {name}")))
        };
        let template_cell = cell(t, TEMPLATE_COLUMN)?;
        let name = template_cell
            .split(':')
            .next()
            .unwrap_or(template_cell)
            .trim();
        let platform = compile(cell(p, PLATFORM_COLUMN)?).map_err(|e| fail(line_no, e))?;
        let command =
            compile(&expand_completions(cell(c, COMMAND_COLUMN)?)).map_err(|e| fail(line_no, e))?;
        let template = match templates.get(name) {
            Some(template) => Arc::clone(template),
            None => {
                let text = load(name)?
                    .ok_or_else(|| fail(line_no, format!("template file {name} not found")))?;
                let template = Arc::new(Template::new(name, text));
                templates.insert(name.to_owned(), Arc::clone(&template));
                template
            }
        };
        rows.push(IndexRow {
            platform,
            command,
            template,
        });
    }
    if header.is_none() {
        return Err(fail(text.lines().count(), "no header line".to_owned()));
    }
    Ok(rows)
}

/// A regex matching at the start of the text, as Python's `re.match` does. Fancy, since
/// ntc-templates' index uses look-ahead, which Python has and the `regex` crate lacks.
fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})")).map_err(|e| format!("bad regex {pattern:?}: {e}"))
}

/// `sh[[ow]]` → `sh(?:o(?:w)?)?`: every completion becomes nested optional groups, one
/// per character, so any prefix of the completion matches.
pub(super) fn expand_completions(command: &str) -> String {
    let mut out = String::new();
    let mut rest = command;
    while let Some(start) = rest.find("[[") {
        let Some(len) = rest[start + 2..].find("]]") else {
            break;
        };
        out.push_str(&rest[..start]);
        let word = &rest[start + 2..start + 2 + len];
        for c in word.chars() {
            out.push_str("(?:");
            out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        }
        for _ in word.chars() {
            out.push_str(")?");
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(text: &str) -> Result<Vec<IndexRow>> {
        parse_index("test", text, |name| Ok(Some(format!("# {name}"))))
    }

    #[test]
    fn completions_expand_to_nested_optional_groups() {
        assert_eq!(expand_completions("sh[[ow]]"), "sh(?:o(?:w)?)?");
        assert_eq!(
            expand_completions("sh[[ow]] ver[[sion]]"),
            "sh(?:o(?:w)?)? ver(?:s(?:i(?:o(?:n)?)?)?)?"
        );
        assert_eq!(expand_completions("show clock"), "show clock");
        assert_eq!(expand_completions("a[[.]]"), "a(?:\\.)?");
    }

    #[test]
    fn abbreviations_match_and_first_row_wins() {
        let rows = index(
            "# comment\n\nTemplate, Hostname, Platform, Command\n\
             a.textfsm, .*, cisco_ios, sh[[ow]] int[[erfaces]] st[[atus]]\n\
             b.textfsm, .*, cisco_ios, sh[[ow]] int[[erfaces]]\n\
             c.textfsm, .*, arista_eos, sh[[ow]] int[[erfaces]]\n",
        )
        .unwrap();
        let find = |platform: &str, command: &str| {
            rows.iter()
                .find(|r| r.matches(platform, command))
                .map(|r| r.template.name().to_owned())
        };
        assert_eq!(find("cisco_ios", "sh int").as_deref(), Some("b.textfsm"));
        assert_eq!(
            find("cisco_ios", "show interfaces").as_deref(),
            Some("b.textfsm")
        );
        assert_eq!(find("cisco_ios", "sh int st").as_deref(), Some("a.textfsm"));
        assert_eq!(
            find("arista_eos", "sho inter").as_deref(),
            Some("c.textfsm")
        );
        assert_eq!(find("arista_eos", "s int"), None);
        assert_eq!(find("cisco_nxos", "show interfaces"), None);
    }

    #[test]
    fn malformed_indexes_report_the_line() {
        let err = index("Template, Platform\nx, y\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(err.to_string().contains("Command"), "{err}");

        let err =
            index("Template, Platform, Command\n\nx.textfsm, cisco_ios, show (\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");

        let err = index("Template, Platform, Command\nx.textfsm, cisco_ios\n").unwrap_err();
        assert!(
            err.to_string().contains("line 2: row has no Command"),
            "{err}"
        );

        let err = parse_index("test", "Template, Platform, Command\nx, p, c\n", |_| {
            Ok(None)
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("template file x not found"),
            "{err}"
        );
    }
}
