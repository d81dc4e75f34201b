//! The line editor of an interactive shell: rustyline with history in the data
//! directory, tab completion of command names and of paths, and the hook that tells the
//! [`Screen`] when a line was accepted.

use std::path::PathBuf;
use std::sync::Arc;

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::config::{CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper};

use super::command::{COMMANDS, canonical, split_words};
use super::screen::Screen;

/// Lines kept in the history file.
const HISTORY_LINES: usize = 1000;

/// What the word under the cursor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// A command name starting at byte `start`, typed up to `prefix`.
    Command {
        start: usize,
        prefix: String,
    },
    /// A path (`start`'s folder, `get`'s destination).
    Path,
    Nothing,
}

/// Decides what Tab completes in `line` with the cursor at byte `pos`.
pub fn classify(line: &str, pos: usize) -> Completion {
    let before = &line[..pos];
    let trimmed = before.trim_start();
    let start = before.len() - trimmed.len();
    let Some(name_end) = trimmed.find(char::is_whitespace) else {
        return Completion::Command {
            start,
            prefix: trimmed.to_string(),
        };
    };
    let Some(name) = canonical(&trimmed[..name_end]) else {
        return Completion::Nothing;
    };
    // Words typed so far. An open quote is a word being typed: close it to count.
    let (words, open_quote) = match split_words(trimmed) {
        Ok(words) => (words, false),
        Err(_) => {
            let closed = split_words(&format!("{trimmed}'"))
                .or_else(|_| split_words(&format!("{trimmed}\"")))
                .unwrap_or_default();
            (closed, true)
        }
    };
    let escaped_blank = trimmed.ends_with("\\ ");
    let new_word = trimmed.ends_with(char::is_whitespace) && !escaped_blank && !open_quote;
    // 0 for the first argument.
    let argument = if new_word {
        words.len() - 1
    } else {
        words.len().saturating_sub(2)
    };
    match (name, argument) {
        ("start", 0) | ("get", 1) => Completion::Path,
        ("help", 0) => {
            let prefix_start = if new_word {
                before.len()
            } else {
                before
                    .trim_end()
                    .rfind(char::is_whitespace)
                    .map_or(0, |i| i + 1)
            };
            Completion::Command {
                start: prefix_start,
                prefix: before[prefix_start..].to_string(),
            }
        }
        _ => Completion::Nothing,
    }
}

/// Command names starting with `prefix`, each followed by a space.
pub fn command_candidates(prefix: &str) -> Vec<Pair> {
    let prefix = prefix.to_lowercase();
    COMMANDS
        .iter()
        .filter(|(name, _, _)| name.starts_with(&prefix))
        .map(|(name, _, _)| Pair {
            display: name.to_string(),
            replacement: format!("{name} "),
        })
        .collect()
}

/// Rustyline's helper for the shell.
pub struct ShellHelper {
    paths: FilenameCompleter,
    screen: Arc<Screen>,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        match classify(line, pos) {
            Completion::Command { start, prefix } => Ok((start, command_candidates(&prefix))),
            Completion::Path => self.paths.complete_path(line, pos),
            Completion::Nothing => Ok((pos, Vec::new())),
        }
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {
    /// Called when Enter is pressed, before rustyline finishes the line: the moment
    /// redraws through its printer must stop (see `screen.rs`).
    fn validate(&self, _: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        self.screen.line_accepted();
        Ok(ValidationResult::Valid(None))
    }
}

impl Helper for ShellHelper {}

/// What reading a line gave.
#[derive(Debug)]
pub enum Read {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// Ctrl-D, or the end of the input.
    End,
}

/// An interactive line editor whose output shares the terminal with a [`Screen`].
pub struct LineEditor {
    editor: Editor<ShellHelper, FileHistory>,
    history: Option<PathBuf>,
}

impl std::fmt::Debug for LineEditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineEditor")
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl LineEditor {
    /// An editor and the screen it shares the terminal with; `history` is the file
    /// lines are kept in (created when needed).
    pub fn new(history: Option<PathBuf>) -> anyhow::Result<(Self, Arc<Screen>)> {
        let config = Config::builder()
            .max_history_size(HISTORY_LINES)?
            .history_ignore_dups(true)?
            .history_ignore_space(true)
            // Circular completion replaces the word in place on each Tab; a listing
            // would print below the prompt, under the progress bars' block.
            .completion_type(CompletionType::Circular)
            .auto_add_history(false)
            .build();
        let mut editor: Editor<ShellHelper, FileHistory> = Editor::with_config(config)?;
        let printer = editor.create_external_printer()?;
        let screen = Screen::terminal(Box::new(std::io::stdout()), Box::new(printer));
        editor.set_helper(Some(ShellHelper {
            paths: FilenameCompleter::new(),
            screen: screen.clone(),
        }));
        if let Some(path) = &history {
            // A missing file is the first run; an unreadable one only costs the history.
            let _ = editor.load_history(path);
        }
        Ok((Self { editor, history }, screen))
    }

    /// Reads one line with the prompt, keeping non-empty lines in the history file.
    pub fn read(&mut self, screen: &Screen, prompt: &str) -> std::io::Result<Read> {
        screen.begin_reading();
        let result = self.editor.readline(prompt);
        screen.end_reading();
        match result {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = self.editor.add_history_entry(line.as_str());
                    self.save_history();
                }
                Ok(Read::Line(line))
            }
            Err(ReadlineError::Interrupted) => Ok(Read::Interrupted),
            Err(ReadlineError::Eof) => Ok(Read::End),
            Err(ReadlineError::Io(e)) => Err(e),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }

    /// Appends the new lines to the history file. Saved after every line, because the
    /// process may end while this editor waits on another thread.
    fn save_history(&mut self) {
        let Some(path) = &self.history else { return };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = self.editor.append_history(path) {
            tracing::debug!(error = %e, path = %path.display(), "cannot save the shell history");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_end(line: &str) -> Completion {
        classify(line, line.len())
    }

    #[test]
    fn the_first_word_completes_to_command_names() {
        assert_eq!(
            at_end("  se"),
            Completion::Command {
                start: 2,
                prefix: "se".to_string()
            }
        );
        let names: Vec<String> = command_candidates("s")
            .into_iter()
            .map(|p| p.display)
            .collect();
        assert_eq!(names, ["start", "search", "status", "stop"]);
        assert_eq!(command_candidates("dow")[0].replacement, "downloads ");
        assert!(command_candidates("zz").is_empty());
    }

    #[test]
    fn paths_complete_for_start_and_for_the_destination_of_get() {
        assert_eq!(at_end("start "), Completion::Path);
        assert_eq!(at_end("start ~/Mu"), Completion::Path);
        assert_eq!(at_end("start My\\ "), Completion::Path, "an escaped blank");
        assert_eq!(at_end("start 'My Mu"), Completion::Path, "an open quote");
        assert_eq!(
            at_end("start 'My "),
            Completion::Path,
            "a blank in an open quote"
        );
        assert_eq!(at_end("get 3"), Completion::Nothing, "a result number");
        assert_eq!(at_end("get 3 "), Completion::Path);
        assert_eq!(at_end("get 3 ./dl/fi"), Completion::Path);
        assert_eq!(at_end("search foo"), Completion::Nothing);
        assert_eq!(at_end("start a b"), Completion::Nothing);
        assert_eq!(at_end("bogus x"), Completion::Nothing);
    }

    #[test]
    fn help_completes_command_names() {
        assert_eq!(
            at_end("help re"),
            Completion::Command {
                start: 5,
                prefix: "re".to_string()
            }
        );
    }

    #[test]
    fn the_path_completer_lists_entries_of_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("music")).unwrap();
        std::fs::write(dir.path().join("movie.mkv"), b"").unwrap();
        let line = format!("start {}/mu", dir.path().display());
        let (start, candidates) = FilenameCompleter::new()
            .complete_path(&line, line.len())
            .unwrap();
        assert_eq!(start, "start ".len());
        let names: Vec<&str> = candidates.iter().map(|c| c.display.as_str()).collect();
        assert_eq!(names, ["music"], "the folder, not movie.mkv");
        let expected = format!("{}/music/", dir.path().display());
        assert_eq!(candidates[0].replacement, expected);
    }
}
