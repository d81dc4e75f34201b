//! Where the shell's output goes, and how download progress bars share the terminal with
//! the prompt without garbling it.
//!
//! Every line the shell prints — command output, download events, progress bars — goes
//! through one [`Screen`], which owns the terminal's bottom rows. The bars are a *block*
//! of rows kept just above the cursor: each redraw moves up over the block, clears to the
//! end of the screen, prints any new text, then the block again. That is indicatif's own
//! technique; what differs is who writes it:
//!
//! - **while a command runs**, the terminal is in its normal mode and only the shell
//!   writes to it, so the screen writes to stdout directly;
//! - **while rustyline reads a line**, the prompt and the half-typed input sit below the
//!   block, so the screen hands the same bytes to rustyline's `ExternalPrinter`.
//!   Rustyline erases the prompt, writes them, and redraws the prompt and the input
//!   where the cursor was: typing is never disturbed.
//!
//! indicatif renders the bars (its `MultiProgress`, rate and ETA in the bar's message),
//! but into [`BarRows`], a `TermLike` that only collects the rendered lines; the screen
//! decides where they go.
//!
//! Between the moment rustyline accepts a line (its validator calls
//! [`Screen::line_accepted`]) and the moment `readline` returns, rustyline still writes
//! the end of the line, so redraws are held back and done right after.
//!
//! One race is left by rustyline's design: a redraw handed to the printer just before
//! the user presses Enter may stay queued until the next prompt, where it moves up over
//! the block it knew. [`Screen::begin_reading`] therefore makes sure at least that many
//! of the rows above the new prompt are the screen's own (bars or blank padding), so a
//! late redraw can only overwrite its own rows, never command output.
//!
//! Without a terminal (scripts, tests) there are no bars and no cursor movement: lines
//! are written as they come, in order.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustyline::ExternalPrinter;

/// How recently a redraw must have been handed to rustyline to count as possibly still
/// queued when the line was accepted. Rustyline drains its queue within microseconds
/// while it waits for keys; the margin covers a loaded machine.
const LATE_REDRAW_WINDOW: Duration = Duration::from_millis(100);
/// Redraws remembered for that check.
const RECENT_REDRAWS: usize = 16;

/// "Move up `n` rows and to column 0, then clear to the end of the screen."
fn erase_up(n: usize) -> String {
    if n == 0 {
        "\r\x1b[J".to_string()
    } else {
        format!("\x1b[{n}A\r\x1b[J")
    }
}

/// A redraw handed to rustyline: when, how far up it moves, how many rows it leaves.
#[derive(Debug, Clone, Copy)]
struct Redraw {
    at: Instant,
    up: usize,
    rows: usize,
}

/// Who may write to the terminal now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A command runs: the screen writes to stdout.
    Direct,
    /// Rustyline shows the prompt: redraws go through its printer.
    Reading,
    /// Rustyline accepted a line and is finishing it: redraws wait.
    Accepting,
}

struct State {
    out: Box<dyn Write + Send>,
    /// Rustyline's printer: present only in interactive mode.
    printer: Option<Box<dyn ExternalPrinter + Send>>,
    mode: Mode,
    /// Text printed while [`Mode::Accepting`], printed when the line is done.
    held: Vec<String>,
    /// The bars as indicatif last rendered them, one terminal row each.
    rows: Vec<String>,
    /// How many rows directly above the cursor line belong to the block (what the
    /// next redraw moves up over).
    shown: usize,
    /// Redraws recently handed to rustyline.
    recent: VecDeque<Redraw>,
    /// Set when a line was accepted right after a redraw: (largest move up, rows it
    /// left) of redraws that may still be queued.
    maybe_late: Option<(usize, usize)>,
}

/// The shell's output. Cheap to share: `Arc<Screen>`.
pub struct Screen {
    state: Mutex<State>,
    interactive: bool,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen")
            .field("interactive", &self.interactive)
            .finish_non_exhaustive()
    }
}

impl Screen {
    /// Plain output to `out`: lines in order, no bars, no cursor movement.
    pub fn plain(out: Box<dyn Write + Send>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::new(out, None)),
            interactive: false,
        })
    }

    /// A terminal on `out` (stdout) whose prompt rustyline draws; `printer` is that
    /// editor's external printer.
    pub fn terminal(
        out: Box<dyn Write + Send>,
        printer: Box<dyn ExternalPrinter + Send>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::new(out, Some(printer))),
            interactive: true,
        })
    }

    /// True when progress bars are shown (a terminal, not a script).
    pub fn interactive(&self) -> bool {
        self.interactive
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while printing leaves nothing half-updated that matters more than
        // continuing to print.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Prints `text` (one or more lines) above the bars.
    pub fn print(&self, text: &str) {
        self.lock().redraw(Some(text));
    }

    /// Replaces the bars with `rows` (from [`BarRows`]).
    pub fn set_rows(&self, rows: Vec<String>) {
        let mut state = self.lock();
        if state.printer.is_none() || state.rows == rows {
            return;
        }
        state.rows = rows;
        state.redraw(None);
    }

    /// Called right before rustyline shows the prompt: from now on redraws go through
    /// its printer. Reserves rows above the prompt for redraws that may arrive late.
    pub fn begin_reading(&self) {
        let mut state = self.lock();
        if state.printer.is_none() {
            return;
        }
        let (late_up, late_rows) = state.maybe_late.take().unwrap_or((0, 0));
        let n = state.rows.len();
        // The next redraw must erase the block a late one may leave (late_rows) as well
        // as the current one (n)...
        let erase = n.max(late_rows);
        // ...and the rows we print now must cover how far a late redraw moves up, plus
        // what the next redraw erases beyond the late one's rows.
        let reserve = n.max(erase).max(late_up + erase - late_rows);
        if reserve > 0 {
            let mut bytes = erase_up(state.shown);
            bytes.push_str(&"\n".repeat(reserve - n));
            for row in &state.rows {
                bytes.push_str(row);
                bytes.push('\n');
            }
            let _ = state.out.write_all(bytes.as_bytes());
            let _ = state.out.flush();
        }
        state.shown = erase;
        state.mode = Mode::Reading;
    }

    /// Called by rustyline's validator when the user pressed Enter: rustyline still
    /// writes the end of the line, so redraws wait for [`Screen::end_reading`].
    pub fn line_accepted(&self) {
        let mut state = self.lock();
        if state.mode == Mode::Reading {
            state.note_late_redraws();
            state.mode = Mode::Accepting;
        }
    }

    /// Called once `readline` returned (a line, Ctrl-C or Ctrl-D): the cursor is on a
    /// fresh line below the input, where a new block starts; held text is printed.
    pub fn end_reading(&self) {
        let mut state = self.lock();
        if state.mode == Mode::Reading {
            state.note_late_redraws();
        }
        if state.mode == Mode::Direct {
            return;
        }
        state.mode = Mode::Direct;
        state.shown = 0;
        let held = std::mem::take(&mut state.held);
        if held.is_empty() {
            if !state.rows.is_empty() {
                state.redraw(None);
            }
        } else {
            state.redraw(Some(&held.join("\n")));
        }
    }
}

impl State {
    fn new(out: Box<dyn Write + Send>, printer: Option<Box<dyn ExternalPrinter + Send>>) -> Self {
        Self {
            out,
            printer,
            mode: Mode::Direct,
            held: Vec::new(),
            rows: Vec::new(),
            shown: 0,
            recent: VecDeque::new(),
            maybe_late: None,
        }
    }

    /// Remembers the redraws handed to rustyline so recently that they may still be
    /// queued when it returns the line.
    fn note_late_redraws(&mut self) {
        let now = Instant::now();
        let late: Vec<Redraw> = self
            .recent
            .drain(..)
            .filter(|r| now.duration_since(r.at) <= LATE_REDRAW_WINDOW)
            .collect();
        if let Some(last) = late.last() {
            let up = late.iter().map(|r| r.up).max().unwrap_or(0);
            self.maybe_late = Some((up, last.rows));
        }
    }

    /// Erases the block, prints `text` if any, and prints the block again.
    fn redraw(&mut self, text: Option<&str>) {
        let Some(printer) = self.printer.as_mut() else {
            if let Some(text) = text {
                let _ = writeln!(self.out, "{text}");
                let _ = self.out.flush();
            }
            return;
        };
        if self.mode == Mode::Accepting {
            if let Some(text) = text {
                self.held.push(text.to_string());
            }
            return;
        }
        let up = self.shown;
        let mut bytes = erase_up(up);
        if let Some(text) = text {
            bytes.push_str(text);
            bytes.push('\n');
        }
        for row in &self.rows {
            bytes.push_str(row);
            bytes.push('\n');
        }
        self.shown = self.rows.len();
        if self.mode == Mode::Reading {
            // Rustyline clears the prompt first and redraws it after: the bytes land
            // exactly where the block ends.
            if printer.print(bytes).is_ok() {
                if self.recent.len() == RECENT_REDRAWS {
                    self.recent.pop_front();
                }
                self.recent.push_back(Redraw {
                    at: Instant::now(),
                    up,
                    rows: self.rows.len(),
                });
            }
        } else {
            let _ = self.out.write_all(bytes.as_bytes());
            let _ = self.out.flush();
        }
    }
}

/// An indicatif `TermLike` that keeps the rendered bar lines instead of drawing them,
/// and hands each finished frame to the [`Screen`].
///
/// indicatif draws a frame as cursor moves and clears (ignored here: the screen erases
/// its own block), then each line followed by padding spaces, then a flush.
#[derive(Debug)]
pub struct BarRows {
    screen: Arc<Screen>,
    frame: Mutex<Vec<String>>,
}

impl BarRows {
    pub fn new(screen: Arc<Screen>) -> Self {
        Self {
            screen,
            frame: Mutex::new(Vec::new()),
        }
    }

    fn frame(&self) -> MutexGuard<'_, Vec<String>> {
        self.frame.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Terminal columns, minus one so a full row never wraps (a wrapped row would make
    /// the block one row taller than the screen believes).
    fn columns() -> usize {
        let (_, columns) = console::Term::stdout().size();
        usize::from(columns).saturating_sub(1).max(20)
    }
}

impl indicatif::TermLike for BarRows {
    fn width(&self) -> u16 {
        u16::try_from(Self::columns()).unwrap_or(u16::MAX)
    }

    fn height(&self) -> u16 {
        // Bars beyond this many are not drawn: the block stays small next to the prompt.
        8
    }

    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let line = s.trim_matches(|c: char| c == '\r' || c == '\n').trim_end();
        if !line.is_empty() {
            let row = console::truncate_str(line, Self::columns(), "…").into_owned();
            self.frame().push(row);
        }
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        let rows = std::mem::take(&mut *self.frame());
        self.screen.set_rows(rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose bytes a test can read back.
    #[derive(Clone, Default)]
    pub struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }

        pub fn take(&self) -> String {
            let bytes = std::mem::take(&mut *self.0.lock().unwrap());
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Stands in for rustyline's printer: records what it was given.
    #[derive(Clone, Default)]
    struct Printer(Arc<Mutex<Vec<String>>>);

    impl ExternalPrinter for Printer {
        fn print(&mut self, msg: String) -> rustyline::Result<()> {
            self.0.lock().unwrap().push(msg);
            Ok(())
        }
    }

    fn terminal() -> (Arc<Screen>, Captured, Printer) {
        let out = Captured::default();
        let printer = Printer::default();
        let screen = Screen::terminal(Box::new(out.clone()), Box::new(printer.clone()));
        (screen, out, printer)
    }

    #[test]
    fn plain_output_is_lines_in_order_without_escapes() {
        let out = Captured::default();
        let screen = Screen::plain(Box::new(out.clone()));
        screen.print("one");
        screen.set_rows(vec!["[===>  ] 50%".to_string()]);
        screen.begin_reading();
        screen.print("two\nthree");
        screen.end_reading();
        assert_eq!(out.text(), "one\ntwo\nthree\n");
    }

    #[test]
    fn while_a_command_runs_text_goes_above_the_bars_on_stdout() {
        let (screen, out, printer) = terminal();
        screen.set_rows(vec!["bar 1".into(), "bar 2".into()]);
        assert_eq!(out.take(), "\r\x1b[Jbar 1\nbar 2\n");
        screen.print("hit");
        assert_eq!(out.take(), "\x1b[2A\r\x1b[Jhit\nbar 1\nbar 2\n");
        assert!(printer.0.lock().unwrap().is_empty());
    }

    #[test]
    fn while_reading_redraws_go_through_the_printer_and_replace_the_block() {
        let (screen, out, printer) = terminal();
        screen.set_rows(vec!["bar 1".into()]);
        out.take();
        screen.begin_reading();
        // The block drawn while the command ran is right above the prompt: kept.
        assert_eq!(out.take(), "\x1b[1A\r\x1b[Jbar 1\n");
        screen.set_rows(vec!["bar 1b".into()]);
        screen.print("download 1 done");
        screen.set_rows(Vec::new());
        let sent = printer.0.lock().unwrap().clone();
        assert_eq!(
            sent,
            [
                "\x1b[1A\r\x1b[Jbar 1b\n",
                "\x1b[1A\r\x1b[Jdownload 1 done\nbar 1b\n",
                "\x1b[1A\r\x1b[J",
            ]
        );
        assert_eq!(out.text(), "", "nothing bypassed the printer");
    }

    #[test]
    fn after_enter_the_next_block_starts_below_the_entered_line() {
        let (screen, out, _) = terminal();
        screen.begin_reading();
        screen.end_reading();
        out.take();
        screen.set_rows(vec!["bar".into()]);
        assert_eq!(
            out.take(),
            "\r\x1b[Jbar\n",
            "no move up over the entered line"
        );
    }

    #[test]
    fn redraws_wait_while_rustyline_finishes_an_accepted_line() {
        let (screen, out, printer) = terminal();
        screen.begin_reading();
        screen.line_accepted();
        // A download ends and a bar moves while rustyline still writes the line.
        screen.print("download 2 done");
        screen.set_rows(vec!["bar".into()]);
        assert_eq!(out.take(), "");
        assert!(printer.0.lock().unwrap().is_empty());
        screen.end_reading();
        assert_eq!(out.take(), "\r\x1b[Jdownload 2 done\nbar\n");
    }

    #[test]
    fn a_redraw_just_before_enter_finds_rows_of_its_own_at_the_next_prompt() {
        let (screen, out, printer) = terminal();
        screen.begin_reading();
        screen.set_rows(vec!["a".into(), "b".into(), "c".into()]);
        // Enter right after that redraw: it may still sit in rustyline's queue and move
        // up 0 rows, leaving 3. Then a download ends while the command runs.
        screen.end_reading();
        screen.set_rows(vec!["a".into()]);
        out.take();
        printer.0.lock().unwrap().clear();
        screen.begin_reading();
        // Three rows reserved (two blank, then the one bar), so the late redraw's three
        // rows replace them; the next redraw erases those three.
        assert_eq!(out.take(), "\x1b[1A\r\x1b[J\n\na\n");
        screen.print("x");
        assert_eq!(printer.0.lock().unwrap()[0], "\x1b[3A\r\x1b[Jx\na\n");
    }

    #[test]
    fn bar_rows_collect_indicatif_frames_without_padding() {
        let (screen, out, _) = terminal();
        let rows = BarRows::new(screen);
        use indicatif::TermLike;
        rows.move_cursor_up(3).unwrap();
        rows.write_str("\r").unwrap();
        rows.write_str("[==>   ] 40% file.bin").unwrap();
        rows.write_str("      ").unwrap();
        rows.write_str("[=>    ] 20% other.bin").unwrap();
        rows.flush().unwrap();
        assert_eq!(
            out.take(),
            "\r\x1b[J[==>   ] 40% file.bin\n[=>    ] 20% other.bin\n"
        );
    }
}
