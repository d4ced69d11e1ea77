//! Unified diffs between two renderings (`diff -u` layout, three lines of context), optionally
//! coloured with ANSI escapes the way `git diff` colours them.

use std::fmt::Write as _;

use similar::{ChangeTag, TextDiff};

use super::Rendering;

const CONTEXT_LINES: usize = 3;

const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// A unified diff of the renderings' texts, headed `--- old_label` / `+++ new_label`.
///
/// `None` stands for an absent value (not yet created, or deleted): every line of the other side
/// is then added or removed. Equal texts give an empty string. With `color`, removed lines are red,
/// added lines green, hunk headers cyan and file headers bold; each escape is closed before the
/// line break so that pagers such as `less -R` keep lines apart.
pub fn unified_diff(
    old: Option<&Rendering>,
    new: Option<&Rendering>,
    old_label: &str,
    new_label: &str,
    color: bool,
) -> String {
    let old_text = old.map_or("", |rendering| rendering.text.as_str());
    let new_text = new.map_or("", |rendering| rendering.text.as_str());
    let diff = TextDiff::from_lines(old_text, new_text);
    let mut unified = diff.unified_diff();
    unified
        .context_radius(CONTEXT_LINES)
        .header(old_label, new_label);
    if !color {
        return unified.to_string();
    }

    let mut out = String::new();
    for (index, hunk) in unified.iter_hunks().enumerate() {
        if index == 0 {
            let _ = writeln!(out, "{BOLD}--- {old_label}{RESET}");
            let _ = writeln!(out, "{BOLD}+++ {new_label}{RESET}");
        }
        let _ = writeln!(out, "{CYAN}{}{RESET}", hunk.header());
        for change in hunk.iter_changes() {
            let (sign, colour) = match change.tag() {
                ChangeTag::Delete => ('-', RED),
                ChangeTag::Insert => ('+', GREEN),
                ChangeTag::Equal => (' ', ""),
            };
            let line = change.value();
            let content = line.trim_end_matches(['\r', '\n']);
            let terminator = &line[content.len()..];
            if colour.is_empty() {
                let _ = write!(out, "{sign}{content}{terminator}");
            } else {
                let _ = write!(out, "{colour}{sign}{content}{RESET}{terminator}");
            }
            if change.missing_newline() {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Format;

    fn text(text: &str) -> Rendering {
        Rendering {
            format: Format::Text,
            text: text.to_owned(),
        }
    }

    #[test]
    fn plain_diff_has_headers_and_context() {
        let old = text("a\nb\nc\nd\ne\nf\ng\nh\n");
        let new = text("a\nb\nc\nd\nE\nf\ng\nh\n");
        assert_eq!(
            unified_diff(Some(&old), Some(&new), "rev 4", "rev 5", false),
            "--- rev 4\n+++ rev 5\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n"
        );
    }

    #[test]
    fn coloured_diff_strips_to_the_plain_one() {
        let old = text("one\ntwo\n");
        let new = text("one\n2\nthree");
        let plain = unified_diff(Some(&old), Some(&new), "a", "b", false);
        let coloured = unified_diff(Some(&old), Some(&new), "a", "b", true);
        assert!(coloured.contains("\x1b[31m-two\x1b[0m\n"));
        assert!(coloured.contains("\x1b[32m+2\x1b[0m\n"));
        assert!(coloured.contains("\x1b[36m@@ -1,2 +1,3 @@\x1b[0m\n"));
        let stripped = coloured
            .replace(BOLD, "")
            .replace(RED, "")
            .replace(GREEN, "")
            .replace(CYAN, "")
            .replace(RESET, "");
        assert_eq!(stripped, plain);
    }

    #[test]
    fn absent_sides_add_or_remove_everything() {
        let value = text("x\ny\n");
        assert_eq!(
            unified_diff(None, Some(&value), "absent", "rev 1", false),
            "--- absent\n+++ rev 1\n@@ -0,0 +1,2 @@\n+x\n+y\n"
        );
        assert_eq!(
            unified_diff(Some(&value), None, "rev 1", "deleted", false),
            "--- rev 1\n+++ deleted\n@@ -1,2 +0,0 @@\n-x\n-y\n"
        );
    }

    #[test]
    fn equal_texts_give_nothing() {
        let value = text("same\n");
        assert_eq!(unified_diff(Some(&value), Some(&value), "a", "b", true), "");
        assert_eq!(unified_diff(None, None, "a", "b", false), "");
    }
}
