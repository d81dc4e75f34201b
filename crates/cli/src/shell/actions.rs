//! What each shell command does, against the session's node.

use crate::terminal_text::safe_path;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use highway_node::views::{DownloadRequest, HitJson};
use highway_wire::ContentId;

use super::command::{Change, Command, GetTarget, help};
use super::downloads::Downloads;
use super::screen::Screen;
use super::session::Session;
use crate::hit_groups::HitGroups;
use crate::render;
use crate::search_cmd;

/// How long the prompt waits for the node's status before showing the plain prompt.
const PROMPT_STATUS_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
/// Most files `files` lists.
const FILES_SHOWN: usize = 50;

/// Whether the shell goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Exit,
}

/// The last search: what was asked and the hits so far.
#[derive(Debug, Clone, Default)]
pub struct LastSearch {
    pub query: String,
    pub hits: Vec<HitJson>,
}

/// A shell's state between commands.
#[derive(Debug)]
pub struct Shell {
    pub session: Session,
    pub screen: Arc<Screen>,
    pub downloads: Downloads,
    pub last_search: Option<LastSearch>,
    /// Where relative paths (`start`, `get`'s dest) are taken from.
    pub cwd: PathBuf,
}

/// `path` with a leading `~` expanded, made absolute against `cwd`.
pub fn resolve(cwd: &Path, path: &Path) -> PathBuf {
    let expanded = match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    };
    cwd.join(expanded)
}

impl Shell {
    fn print(&self, text: &str) {
        self.screen.print(text);
    }

    /// Runs one command; an error is the command's failure, printed by the caller.
    pub async fn execute(&mut self, command: Command) -> anyhow::Result<Flow> {
        match command {
            Command::Nothing => {}
            Command::Help => self.print(&help()),
            Command::Exit => return Ok(Flow::Exit),
            Command::Start(root) => self.start(&root).await?,
            Command::Search(words) => self.search(words).await?,
            Command::Results => self.results(),
            Command::Get { target, dest } => self.get(target, dest).await?,
            Command::Ticket(path) => {
                let path = resolve(&self.cwd, &path);
                let tickets = self.session.client()?.tickets(path).await?;
                let lines: Vec<String> = tickets
                    .iter()
                    .map(|t| {
                        format!(
                            "{} ({})\n{}",
                            crate::terminal_text::safe(&t.name),
                            crate::units::human_bytes(t.size),
                            t.ticket
                        )
                    })
                    .collect();
                self.print(&lines.join("\n"));
            }
            Command::Downloads => {
                let list = self.session.client()?.downloads().await?;
                self.print(&render::downloads_table(&list));
            }
            Command::Change { change, id } => {
                let client = self.session.client()?;
                let view = match change {
                    Change::Pause => client.pause_download(id, true).await?,
                    Change::Resume => client.pause_download(id, false).await?,
                    Change::Cancel => client.cancel_download(id).await?,
                };
                self.print(&format!(
                    "download {id} is {} ({} fetched)",
                    view.state,
                    crate::units::human_bytes(view.done_bytes)
                ));
                // A resumed download is followed again, so `wait` waits for it.
                if change == Change::Resume {
                    let label = view.hash.short();
                    self.downloads.follow(client, view, &label);
                }
            }
            Command::Wait => self.wait().await,
            Command::Neighbors => {
                let list = self.session.client()?.neighbors().await?;
                self.print(&render::neighbors_table(&list));
            }
            Command::Files => {
                let files = self.session.client()?.files().await?;
                let text = match files.root {
                    None => "nothing is shared; `start <folder>` shares one".to_string(),
                    Some(_) => render::files_report(&files, FILES_SHOWN),
                };
                self.print(&text);
            }
            Command::Status => {
                let status = self.session.client()?.status().await?;
                self.print(&render::status_report(&status));
            }
            Command::Rescan => {
                let files = self.session.client()?.rescan().await?;
                let Some(root) = &files.root else {
                    bail!(
                        "nothing is shared, so there is nothing to rescan; `start <folder>` shares one"
                    );
                };
                self.print(&format!(
                    "rescanning {}; `files` shows what is indexed",
                    root.display()
                ));
            }
            Command::Unshare => {
                self.session.client()?.unshare().await?;
                self.print("nothing is shared any more; the node stays in the network");
            }
            Command::Stop => {
                let text = self.session.stop().await?;
                self.print(&text);
            }
        }
        Ok(Flow::Continue)
    }

    async fn start(&mut self, root: &Path) -> anyhow::Result<()> {
        let root = resolve(&self.cwd, root);
        if !root.is_dir() {
            bail!(
                "{} is not a folder; give the folder to share",
                root.display()
            );
        }
        let text = self.session.start(root).await?;
        self.print(&text);
        Ok(())
    }

    async fn search(&mut self, words: String) -> anyhow::Result<()> {
        let client = self.session.client()?;
        let request = search_cmd::request(std::slice::from_ref(&words), None, None, None);
        let id = client.start_search(&request).await?;
        let screen = self.screen.clone();
        // Hits are kept as they arrive, so an interrupted search still has results.
        let last = self.last_search.insert(LastSearch {
            query: words,
            hits: Vec::new(),
        });
        let mut print = search_cmd::print_files(|line| screen.print(line));
        let outcome = search_cmd::follow(&client, &id, None, |number, hit| {
            print(number, hit);
            last.hits.push(hit.clone());
        })
        .await?;
        let mut summary = render::search_summary(&outcome.last, &outcome.hits);
        if !outcome.hits.is_empty() {
            summary.push_str("; `get <number>` downloads one, `results` counts sources");
        }
        // A node cut off from the network finds only its own files: say so.
        if let Some(why) = client.status().await.ok().and_then(|s| s.cut_off) {
            summary.push_str(&format!("\nnot connected: {why}"));
        }
        self.print(&summary);
        Ok(())
    }

    fn results(&self) {
        let text = match &self.last_search {
            None => "no search yet; `search <words>` starts one".to_string(),
            Some(last) if last.hits.is_empty() => {
                format!("the last search (\"{}\") found no hits", last.query)
            }
            Some(last) => {
                let files = HitGroups::of(&last.hits);
                let mut lines = vec![render::file_header(true)];
                lines.extend(
                    files
                        .files()
                        .iter()
                        .enumerate()
                        .map(|(i, file)| render::file_line(i + 1, file, true)),
                );
                lines.join("\n")
            }
        };
        self.print(&text);
    }

    /// The hits of the last search with `hash` (every holder of that file).
    fn hits_for(&self, hash: ContentId) -> Vec<&HitJson> {
        self.last_search
            .iter()
            .flat_map(|last| last.hits.iter())
            .filter(|hit| hit.hash == hash)
            .collect()
    }

    async fn get(&mut self, target: GetTarget, dest: Option<PathBuf>) -> anyhow::Result<()> {
        let client = self.session.client()?;
        let mut ticket = None;
        let hash = match target {
            GetTarget::Hash(hash) => hash,
            GetTarget::Ticket(t) => {
                let hash = t.0.content;
                ticket = Some(t);
                hash
            }
            GetTarget::Prefix(prefix) => self.resolve_prefix(&prefix).await?,
            GetTarget::Result(number) => {
                let Some(last) = &self.last_search else {
                    bail!("no search yet, so no result {number}; `search <words>` first");
                };
                let files = HitGroups::of(&last.hits);
                match files.get(number) {
                    Some(file) => file.hash,
                    None => bail!(
                        "no result {number}: the last search found {}; `results` lists them",
                        render::plural(files.len(), "file", "files")
                    ),
                }
            }
        };
        // Every other peer holding the file is a source (not this node's own copy).
        let hits: Vec<&HitJson> = self
            .hits_for(hash)
            .into_iter()
            .filter(|hit| hit.hops > 0)
            .collect();
        let name = hits.first().map(|hit| hit.name.clone());
        // The node names the file and picks a free name, by the rules `highway get` has.
        let out = dest
            .map(|dest| crate::get_cmd::destination(&resolve(&self.cwd, &dest)))
            .transpose()?;
        let mut holders: Vec<_> = hits.iter().map(|hit| hit.addr).collect();
        holders.sort();
        holders.dedup();
        let request = match ticket {
            Some(ticket) => {
                crate::get_cmd::request_for(&crate::get_cmd::What::Ticket(ticket), out, holders)
            }
            None => DownloadRequest {
                hash,
                out,
                name: name.clone(),
                holders,
                size: hits.first().map(|hit| hit.size),
            },
        };
        let holders = request.holders.clone();
        let name = request.name.clone();
        let view = client
            .start_download(&request)
            .await
            .context("the node did not start the download")?;
        let from = if holders.is_empty() {
            "the node looks for peers that hold it".to_string()
        } else {
            format!(
                "{} known",
                render::plural(holders.len(), "source", "sources")
            )
        };
        self.print(&format!(
            "download {} started: {} ({from}); `downloads` or `wait` to follow it",
            view.id,
            safe_path(&view.out)
        ));
        let label = name.map_or_else(|| hash.short(), |name| safe_path(Path::new(&name)));
        self.downloads.follow(client, view, &label);
        Ok(())
    }

    /// The one content hash starting with `prefix` among the last search's files, the
    /// node's downloads and its shared files.
    async fn resolve_prefix(&self, prefix: &str) -> anyhow::Result<ContentId> {
        let client = self.session.client()?;
        let mut known: Vec<ContentId> = self
            .last_search
            .iter()
            .flat_map(|last| last.hits.iter().map(|hit| hit.hash))
            .collect();
        known.extend(client.downloads().await?.iter().map(|d| d.hash));
        known.extend(client.files().await?.files.iter().map(|f| f.hash));
        let mut matching: Vec<ContentId> = known
            .into_iter()
            .filter(|hash| hash.to_string().starts_with(prefix))
            .collect();
        matching.sort();
        matching.dedup();
        match matching.as_slice() {
            [hash] => Ok(*hash),
            [] => bail!(
                "no file the shell knows of has a hash starting with {prefix} (it looks in the \
                 last search, the downloads and the shared files); `search` first, or give \
                 the full 64-character hash"
            ),
            several => bail!(
                "{} files have hashes starting with {prefix}; give more of the hash",
                several.len()
            ),
        }
    }

    /// The prompt: `highway> `, or `highway (not connected)> ` while the node has no
    /// neighbours to search or fetch through; the first time it is cut off the reason is
    /// printed too (issue 13). `connected` carries what the last prompt said.
    pub async fn prompt(&self, connected: &mut bool) -> String {
        let cut_off = match self.session.client() {
            Ok(client) => {
                let status = tokio::time::timeout(PROMPT_STATUS_WAIT, client.status()).await;
                status.ok().and_then(Result::ok).and_then(|s| s.cut_off)
            }
            Err(_) => None,
        };
        match cut_off {
            Some(why) => {
                if *connected {
                    self.print(&format!("not connected: {why}"));
                }
                *connected = false;
                "highway (not connected)> ".to_string()
            }
            None => {
                *connected = true;
                "highway> ".to_string()
            }
        }
    }

    async fn wait(&self) {
        let active = self.downloads.active();
        if active == 0 {
            self.print("no download of this shell is running");
            return;
        }
        self.downloads.wait_all().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_against_the_shell_directory_and_home() {
        let cwd = Path::new("/work/here");
        assert_eq!(resolve(cwd, Path::new("a/b")), Path::new("/work/here/a/b"));
        assert_eq!(resolve(cwd, Path::new("/abs")), Path::new("/abs"));
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(
                resolve(cwd, Path::new("~/Music")),
                PathBuf::from(home).join("Music")
            );
        }
    }
}
