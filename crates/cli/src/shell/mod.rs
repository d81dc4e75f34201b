//! `highway shell`: an interactive shell on a node — share a folder, search, download
//! with progress bars — or, when standard input is not a terminal, a script runner that
//! reads one command per line and prints plain output.
//!
//! - [`command`]: names, usage, parsing of a line;
//! - [`actions`]: what each command does;
//! - [`session`]: the node (attached by address, or started in-process by `start`);
//! - [`downloads`]: following downloads in the background;
//! - [`screen`]: output, and progress bars that share the terminal with the prompt;
//! - [`editor`]: rustyline (history, completion).
//!
//! [`run_script`] drives a shell from any reader to any writer; `highway demo` and the
//! tests use it, `highway shell` uses [`run`].

mod actions;
mod command;
mod downloads;
mod editor;
mod screen;
mod session;

use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use tokio::sync::mpsc;

use self::actions::{Flow, Shell};
use self::downloads::Downloads;
use self::editor::{LineEditor, Read};
use self::screen::Screen;
pub use self::session::NodeSettings;
use self::session::Session;
use crate::control_client::TokenArg;

/// File in the data directory that keeps the interactive history.
const HISTORY_FILE: &str = "shell_history";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Use this running node (its control address, `control: ADDR` as `highway node`
    /// printed it). Without it, `start <folder>` starts a node inside the shell.
    #[arg(long, env = "HIGHWAY_NODE", value_name = "CONTROL_ADDR")]
    node: Option<SocketAddr>,
    #[command(flatten)]
    token: TokenArg,
    /// The Gatekeeper a node started by `start` joins through.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7700")]
    gatekeeper: String,
    /// The address a node started by `start` binds and publishes (not 0.0.0.0).
    #[arg(long, value_name = "IP", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// Holds the identity key of a node started by `start`, and the shell's history.
    #[arg(long, value_name = "DIR", default_value = "./highway-data")]
    data_dir: PathBuf,
}

/// How a shell starts.
#[derive(Debug, Clone)]
pub struct Setup {
    /// A running node to use from the start.
    pub attach: Option<SocketAddr>,
    /// Its token (or a file holding it); without one, the file its node wrote.
    pub token: TokenArg,
    /// For `start` without a node.
    pub settings: NodeSettings,
    /// Printed first (interactive or not).
    pub banner: Option<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let history = args.data_dir.join(HISTORY_FILE);
    let setup = Setup {
        attach: args.node,
        token: args.token,
        settings: NodeSettings {
            gatekeeper: args.gatekeeper,
            bind: args.bind,
            data_dir: args.data_dir,
        },
        banner: None,
    };
    run_on_stdio(setup, Some(history)).await
}

/// Runs a shell on this process's terminal, or on its standard input and output when
/// either is not a terminal.
pub async fn run_on_stdio(setup: Setup, history: Option<PathBuf>) -> anyhow::Result<()> {
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        let (editor, screen) = LineEditor::new(history)?;
        let source = Box::new(Interactive { editor });
        run_with(setup, source, screen).await
    } else {
        let stdin = std::io::BufReader::new(std::io::stdin());
        run_script(setup, stdin, Box::new(std::io::stdout())).await
    }
}

/// Runs a shell that reads commands from `input`, one per line, and writes plain output
/// to `out`. Fails when any command failed, so a script's exit status tells.
pub async fn run_script(
    setup: Setup,
    input: impl BufRead + Send + 'static,
    out: Box<dyn Write + Send>,
) -> anyhow::Result<()> {
    let screen = Screen::plain(out);
    run_with(setup, Box::new(Script { input }), screen).await
}

/// Where lines come from. Runs on a thread of its own: both sources block.
trait LineSource: Send {
    /// Reads one line; an interactive source shows `prompt`.
    fn read(&mut self, screen: &Screen, prompt: &str) -> std::io::Result<Read>;
}

struct Interactive {
    editor: LineEditor,
}

impl LineSource for Interactive {
    fn read(&mut self, screen: &Screen, prompt: &str) -> std::io::Result<Read> {
        self.editor.read(screen, prompt)
    }
}

struct Script<R> {
    input: R,
}

impl<R: BufRead + Send> LineSource for Script<R> {
    fn read(&mut self, _: &Screen, _: &str) -> std::io::Result<Read> {
        let mut line = String::new();
        match self.input.read_line(&mut line)? {
            0 => Ok(Read::End),
            _ => Ok(Read::Line(line)),
        }
    }
}

/// Reads lines on a thread of its own, one each time a line is asked for with the prompt
/// to show (so the prompt appears only once the previous command's output is complete).
/// A plain thread, not a tokio blocking task: the process must be able to exit while it
/// waits for input.
fn spawn_reader(
    mut source: Box<dyn LineSource>,
    screen: Arc<Screen>,
) -> (
    std::sync::mpsc::Sender<String>,
    mpsc::Receiver<std::io::Result<Read>>,
) {
    let (ask, asked) = std::sync::mpsc::channel::<String>();
    let (give, lines) = mpsc::channel(1);
    let spawned = std::thread::Builder::new()
        .name("shell-input".to_string())
        .spawn(move || {
            while let Ok(prompt) = asked.recv() {
                let read = source.read(&screen, &prompt);
                let last = !matches!(read, Ok(Read::Line(_) | Read::Interrupted));
                if give.blocking_send(read).is_err() || last {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the shell's input thread");
    }
    (ask, lines)
}

/// Ctrl-C and SIGTERM.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

/// Which signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Interrupt,
    Terminate,
}

impl Signals {
    fn new() -> Self {
        Self {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .ok(),
        }
    }

    async fn next(&mut self) -> Stop {
        #[cfg(unix)]
        if let Some(terminate) = self.terminate.as_mut() {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => Stop::Interrupt,
                _ = terminate.recv() => Stop::Terminate,
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        Stop::Interrupt
    }
}

async fn run_with(
    setup: Setup,
    source: Box<dyn LineSource>,
    screen: Arc<Screen>,
) -> anyhow::Result<()> {
    let interactive = screen.interactive();
    let session = Session::new(setup.attach, &setup.token, setup.settings)?;
    let mut shell = Shell {
        session,
        downloads: Downloads::new(screen.clone()),
        screen: screen.clone(),
        last_search: None,
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    if let Some(banner) = &setup.banner {
        screen.print(banner);
    }
    if interactive && setup.banner.is_none() {
        let node = match shell.session.client() {
            Ok(client) => format!("using the node at {}", client.addr()),
            Err(_) => "no node yet: `start <folder>` starts one".to_string(),
        };
        screen.print(&format!("highway shell: {node}; `help` lists the commands"));
    }
    let (ask, mut lines) = spawn_reader(source, screen.clone());
    let mut signals = Signals::new();
    let mut failures = 0usize;
    let mut interrupted_once = false;
    let mut connected = true;
    loop {
        let prompt = if interactive {
            shell.prompt(&mut connected).await
        } else {
            String::new()
        };
        if ask.send(prompt).is_err() {
            break;
        }
        let read = tokio::select! {
            read = lines.recv() => read,
            stop = signals.next() => {
                screen.print(match stop {
                    Stop::Interrupt => "interrupted; leaving",
                    Stop::Terminate => "terminated; leaving",
                });
                break;
            }
        };
        let line = match read {
            None | Some(Ok(Read::End)) => break,
            Some(Err(e)) => {
                screen.print(&format!("error: cannot read a command: {e}"));
                failures += 1;
                break;
            }
            Some(Ok(Read::Interrupted)) => {
                if interrupted_once {
                    break;
                }
                interrupted_once = true;
                screen.print("(to leave, press Ctrl-C again or Ctrl-D, or type exit)");
                continue;
            }
            Some(Ok(Read::Line(line))) => line,
        };
        interrupted_once = false;
        let command = match command::parse(&line) {
            Ok(command) => command,
            Err(e) => {
                screen.print(&e.to_string());
                failures += 1;
                continue;
            }
        };
        let result = tokio::select! {
            result = shell.execute(command) => result,
            stop = signals.next() => {
                if stop == Stop::Terminate || !interactive {
                    screen.print("terminated; leaving");
                    break;
                }
                // Ctrl-C stops waiting; what the node started (a search, a download)
                // goes on there.
                screen.print("interrupted");
                continue;
            }
        };
        match result {
            Ok(Flow::Continue) => {}
            Ok(Flow::Exit) => break,
            Err(e) => {
                screen.print(&format!("error: {e:#}"));
                failures += 1;
            }
        }
    }
    drop(ask);
    let failed_downloads = shell.downloads.failed();
    finish(shell).await;
    if !interactive && (failures > 0 || failed_downloads > 0) {
        let mut what = Vec::new();
        if failures > 0 {
            what.push(format!(
                "{} of the script failed",
                render_failures(failures)
            ));
        }
        if failed_downloads > 0 {
            what.push(format!(
                "{} failed",
                crate::render::plural(failed_downloads, "download", "downloads")
            ));
        }
        bail!("{} (see the errors above)", what.join(" and "));
    }
    Ok(())
}

fn render_failures(n: usize) -> String {
    crate::render::plural(n, "command", "commands")
}

/// Ends a shell: warns about downloads that stop with an in-process node, then lets that
/// node leave gracefully.
async fn finish(shell: Shell) {
    let Shell {
        session,
        downloads,
        screen,
        ..
    } = shell;
    let running = downloads.active();
    drop(downloads);
    if running > 0 {
        let note = if session.owns_node() {
            "they stop with this shell's node; their .part files keep what arrived and a later \
             `get` resumes"
        } else {
            "they go on in the node"
        };
        screen.print(&format!(
            "{} still running: {note}",
            crate::render::plural(running, "download", "downloads")
        ));
    }
    if let Some(text) = session.close().await {
        screen.print(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A writer whose bytes a test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn setup(attach: Option<SocketAddr>) -> Setup {
        Setup {
            attach,
            token: TokenArg::default(),
            settings: NodeSettings {
                gatekeeper: "http://127.0.0.1:9".to_string(),
                bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                data_dir: std::env::temp_dir().join("highway-shell-test"),
            },
            banner: None,
        }
    }

    async fn script(attach: Option<SocketAddr>, input: &str) -> (anyhow::Result<()>, String) {
        let out = Captured::default();
        let input = std::io::Cursor::new(input.as_bytes().to_vec());
        let result = run_script(setup(attach), input, Box::new(out.clone())).await;
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        (result, text)
    }

    #[tokio::test]
    async fn a_script_of_valid_commands_without_a_node_prints_plain_text() {
        let (result, out) = script(None, "help\n# a comment\n\nresults\nexit\nstatus\n").await;
        result.unwrap();
        assert!(out.starts_with("commands:\n"), "{out}");
        assert!(
            out.contains("no search yet; `search <words>` starts one"),
            "{out}"
        );
        assert!(!out.contains("\x1b["), "no escape sequences: {out:?}");
        assert!(!out.contains("highway>"), "no prompt: {out}");
        assert!(!out.contains("id:"), "nothing runs after exit: {out}");
    }

    #[tokio::test]
    async fn wrong_usage_is_explained_and_makes_the_script_fail() {
        let (result, out) = script(None, "get\nfrobnicate\nsearch\nstatus\n").await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "usage: get <result number | content hash | ticket> [dest]"
        );
        assert_eq!(
            lines[1],
            "unknown command `frobnicate`; `help` lists the commands"
        );
        assert_eq!(lines[2], "usage: search <words>");
        assert!(
            lines[3].starts_with("error: no node yet: `start <folder>`"),
            "{out}"
        );
        let err = result.unwrap_err().to_string();
        assert_eq!(
            err,
            "4 commands of the script failed (see the errors above)"
        );
    }

    #[tokio::test]
    async fn a_node_that_is_not_there_is_named_with_a_hint() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (result, out) = script(Some(addr), "files\n").await;
        assert!(result.is_err());
        assert!(
            out.contains(&format!("cannot reach a node's control API at {addr}")),
            "{out}"
        );
    }

    #[tokio::test]
    async fn get_needs_a_search_first_and_start_needs_a_folder() {
        let (_, out) = script(
            Some("127.0.0.1:9".parse().unwrap()),
            "get 1\nstart /surely/not/here\n",
        )
        .await;
        assert!(out.contains("no search yet, so no result 1"), "{out}");
        assert!(out.contains("/surely/not/here is not a folder"), "{out}");
    }
}
