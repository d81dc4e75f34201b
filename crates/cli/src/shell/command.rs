//! The shell's commands: their names, usage and help, and parsing a typed line into one.

use std::path::PathBuf;

use highway_wire::ContentId;
use highway_wire::peer::ticket::{Ticket, looks_like_ticket};

/// Every command: name, usage, what it does. `help` prints this; completion offers the
/// names.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "start",
        "start <folder>",
        "share a folder: starts a node in this shell, or switches the attached node's share",
    ),
    (
        "search",
        "search <words>",
        "search the network; files print as they are found (by name or folder)",
    ),
    (
        "results",
        "results",
        "the files of the last search with their number of sources, numbered for `get`",
    ),
    (
        "get",
        GET_USAGE,
        "download in the background, verified; a hash may be cut to its first 6+ characters; \
         dest: a folder, a new file, or nothing for the node's download folder",
    ),
    (
        "downloads",
        "downloads",
        "every download of the node: state, progress, rate, ETA",
    ),
    (
        "ticket",
        "ticket <shared file or folder>",
        "print tickets: `highway get TICKET` fetches the file anywhere on the network",
    ),
    (
        "pause",
        "pause <download id>",
        "pause a download (the node keeps it, also across restarts)",
    ),
    (
        "resume",
        "resume <download id>",
        "go on with a paused, cancelled or failed download from what it fetched",
    ),
    (
        "cancel",
        "cancel <download id>",
        "stop a download; what it fetched stays, to resume",
    ),
    (
        "wait",
        "wait",
        "wait until the downloads started in this shell end",
    ),
    (
        "neighbors",
        "neighbors",
        "the node's neighbours and their state",
    ),
    ("files", "files", "the shared folder and what is indexed"),
    (
        "status",
        "status",
        "the node's id, addresses, phase and degree",
    ),
    ("rescan", "rescan", "walk the shared folder again now"),
    (
        "unshare",
        "unshare",
        "stop sharing (the node stays in the network)",
    ),
    (
        "stop",
        "stop",
        "leave the network (the attached node exits; one started here stops)",
    ),
    ("help", "help", "this list"),
    (
        "exit",
        "exit",
        "leave the shell (a node started here leaves gracefully); also quit, Ctrl-D",
    ),
];

pub const GET_USAGE: &str = "get <result number | content hash | ticket> [dest]";

/// Accepted spellings that are not in [`COMMANDS`].
const ALIASES: &[(&str, &str)] = &[("quit", "exit"), ("neighbours", "neighbors"), ("?", "help")];

/// What to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetTarget {
    /// A hit of the last search, numbered from 1 as `results` shows.
    Result(usize),
    Hash(ContentId),
    /// The start of a content hash (lowercase hex), as tables print it: resolved against
    /// the files the shell knows of, and refused unless exactly one matches.
    Prefix(String),
    /// A ticket (`hw1...`), as `highway share` and `ticket` print them.
    Ticket(Box<Ticket>),
}

/// What `pause`, `resume` and `cancel` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Pause,
    Resume,
    Cancel,
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An empty line or a comment (`# ...`, handy in scripts).
    Nothing,
    Start(PathBuf),
    Search(String),
    Results,
    Get {
        target: GetTarget,
        dest: Option<PathBuf>,
    },
    Downloads,
    /// Tickets for a shared file, or the files under a shared folder.
    Ticket(PathBuf),
    /// `pause`, `resume` or `cancel` download `id`.
    Change {
        change: Change,
        id: u64,
    },
    Wait,
    Neighbors,
    Files,
    Status,
    Rescan,
    Unshare,
    Stop,
    Help,
    Exit,
}

/// Why a line is not a command; the text says what to type instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(text: &str) -> UsageError {
    UsageError(format!("usage: {text}"))
}

/// Splits a line into words like a POSIX shell does for simple cases: blanks separate,
/// `'...'` and `"..."` quote, a backslash escapes the next character (tab completion
/// escapes spaces in paths that way).
pub fn split_words(line: &str) -> Result<Vec<String>, UsageError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(next) => word.push(next),
                    None => word.push('\\'),
                }
            }
            '\'' | '"' => {
                in_word = true;
                let quote = c;
                loop {
                    match chars.next() {
                        Some(c) if c == quote => break,
                        Some('\\') if quote == '"' => match chars.next() {
                            Some(next) => word.push(next),
                            None => return Err(unterminated(quote)),
                        },
                        Some(c) => word.push(c),
                        None => return Err(unterminated(quote)),
                    }
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn unterminated(quote: char) -> UsageError {
    UsageError(format!(
        "unterminated {quote} quote; close it or escape it with \\"
    ))
}

/// The canonical name for `word`, if it names a command.
pub fn canonical(word: &str) -> Option<&'static str> {
    let lower = word.to_lowercase();
    if let Some((name, _, _)) = COMMANDS.iter().find(|(name, _, _)| *name == lower) {
        return Some(name);
    }
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map(|(_, name)| *name)
}

/// Parses one line.
pub fn parse(line: &str) -> Result<Command, UsageError> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(Command::Nothing);
    }
    let words = split_words(trimmed)?;
    let Some((first, args)) = words.split_first() else {
        return Ok(Command::Nothing);
    };
    let Some(name) = canonical(first) else {
        return Err(unknown(first));
    };
    let no_args = |command: Command| {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(UsageError(format!(
                "`{name}` takes no arguments; usage: {name}"
            )))
        }
    };
    match name {
        "start" => match args {
            [root] => Ok(Command::Start(PathBuf::from(root))),
            _ => Err(usage("start <folder>")),
        },
        "search" if args.is_empty() => Err(usage("search <words>")),
        "search" => Ok(Command::Search(args.join(" "))),
        "get" => parse_get(args),
        "results" => no_args(Command::Results),
        "downloads" => no_args(Command::Downloads),
        "ticket" => match args {
            [path] => Ok(Command::Ticket(PathBuf::from(path))),
            _ => Err(usage("ticket <shared file or folder>")),
        },
        "pause" | "resume" | "cancel" => {
            let change = match name {
                "pause" => Change::Pause,
                "resume" => Change::Resume,
                _ => Change::Cancel,
            };
            match args {
                [id] => match id.parse::<u64>() {
                    Ok(id) => Ok(Command::Change { change, id }),
                    Err(_) => Err(UsageError(format!(
                        "`{id}` is not a download id; `downloads` lists them (the first \
                         column); usage: {name} <download id>"
                    ))),
                },
                _ => Err(usage(&format!("{name} <download id>"))),
            }
        }
        "wait" => no_args(Command::Wait),
        "neighbors" => no_args(Command::Neighbors),
        "files" => no_args(Command::Files),
        "status" => no_args(Command::Status),
        "rescan" => no_args(Command::Rescan),
        "unshare" => no_args(Command::Unshare),
        "stop" => no_args(Command::Stop),
        "help" => Ok(Command::Help),
        "exit" => no_args(Command::Exit),
        _ => Err(unknown(first)),
    }
}

/// Longest result number: longer digit strings are hash prefixes.
const MAX_RESULT_DIGITS: usize = 5;
/// Shortest hash prefix taken.
pub const MIN_HASH_PREFIX: usize = 6;

fn parse_get(args: &[String]) -> Result<Command, UsageError> {
    let (target, dest) = match args {
        [target] => (target, None),
        [target, dest] => (target, Some(PathBuf::from(dest))),
        _ => return Err(usage(GET_USAGE)),
    };
    if looks_like_ticket(target) {
        let ticket = target
            .parse::<Ticket>()
            .map_err(|e| UsageError(format!("{e}; usage: {GET_USAGE}")))?;
        return Ok(Command::Get {
            target: GetTarget::Ticket(Box::new(ticket)),
            dest,
        });
    }
    let is_hex = target.chars().all(|c| c.is_ascii_hexdigit());
    let target = if target.len() <= MAX_RESULT_DIGITS
        && let Ok(number) = target.parse::<usize>()
    {
        if number == 0 {
            return Err(UsageError(
                "results are numbered from 1; `results` lists them".to_string(),
            ));
        }
        GetTarget::Result(number)
    } else if let Ok(hash) = target.parse::<ContentId>() {
        GetTarget::Hash(hash)
    } else if is_hex && target.len() >= MIN_HASH_PREFIX && target.len() < 64 {
        GetTarget::Prefix(target.to_ascii_lowercase())
    } else {
        return Err(UsageError(format!(
            "`{target}` is neither a result number nor a content hash (64 hex characters, \
             or the first {MIN_HASH_PREFIX} or more of them as the tables show); usage: \
             {GET_USAGE}"
        )));
    };
    Ok(Command::Get { target, dest })
}

fn unknown(word: &str) -> UsageError {
    match closest(word) {
        Some(name) => UsageError(format!(
            "unknown command `{word}`; did you mean `{name}`? (`help` lists the commands)"
        )),
        None => UsageError(format!(
            "unknown command `{word}`; `help` lists the commands"
        )),
    }
}

/// The command name within two edits of `word`, if any: the usual typo.
fn closest(word: &str) -> Option<&'static str> {
    let word = word.to_lowercase();
    COMMANDS
        .iter()
        .map(|(name, _, _)| (edit_distance(&word, name), *name))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, name)| name)
}

/// Levenshtein distance, for short words.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The text of `help`.
pub fn help() -> String {
    let width = COMMANDS.iter().map(|(_, u, _)| u.len()).max().unwrap_or(0);
    let mut out = String::from("commands:\n");
    for (_, usage, what) in COMMANDS {
        out.push_str(&format!("  {usage:<width$}  {what}\n"));
    }
    out.push_str("paths may be quoted ('My Music') or escaped (My\\ Music); Tab completes");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_blanks_with_quotes_and_escapes() {
        assert_eq!(
            split_words("  get 3   out.bin ").unwrap(),
            ["get", "3", "out.bin"]
        );
        assert_eq!(
            split_words(r#"start "My Music" 'a b' c\ d"#).unwrap(),
            ["start", "My Music", "a b", "c d"]
        );
        assert_eq!(
            split_words(r#"x "say \"hi\"""#).unwrap(),
            ["x", r#"say "hi""#]
        );
        assert_eq!(split_words("x ''").unwrap(), ["x", ""]);
        assert!(split_words("start 'open").is_err());
    }

    #[test]
    fn every_command_parses_and_names_are_case_insensitive() {
        assert_eq!(parse("").unwrap(), Command::Nothing);
        assert_eq!(parse("  # a comment").unwrap(), Command::Nothing);
        assert_eq!(
            parse("start ~/Music").unwrap(),
            Command::Start(PathBuf::from("~/Music"))
        );
        assert_eq!(
            parse("Search ocean  sunset").unwrap(),
            Command::Search("ocean sunset".to_string())
        );
        assert_eq!(parse("results").unwrap(), Command::Results);
        assert_eq!(parse("downloads").unwrap(), Command::Downloads);
        assert_eq!(parse("wait").unwrap(), Command::Wait);
        assert_eq!(parse("neighbours").unwrap(), Command::Neighbors);
        assert_eq!(parse("files").unwrap(), Command::Files);
        assert_eq!(parse("STATUS").unwrap(), Command::Status);
        assert_eq!(parse("rescan").unwrap(), Command::Rescan);
        assert_eq!(parse("unshare").unwrap(), Command::Unshare);
        assert_eq!(parse("stop").unwrap(), Command::Stop);
        assert_eq!(parse("help").unwrap(), Command::Help);
        assert_eq!(parse("quit").unwrap(), Command::Exit);
        assert_eq!(parse("exit").unwrap(), Command::Exit);
    }

    #[test]
    fn get_takes_a_result_number_or_a_hash_and_an_optional_destination() {
        assert_eq!(
            parse("get 2").unwrap(),
            Command::Get {
                target: GetTarget::Result(2),
                dest: None
            }
        );
        let hash = ContentId::of(b"x");
        assert_eq!(
            parse(&format!("get {hash} 'my file.bin'")).unwrap(),
            Command::Get {
                target: GetTarget::Hash(hash),
                dest: Some(PathBuf::from("my file.bin"))
            }
        );
    }

    #[test]
    fn get_takes_the_hash_prefixes_tables_show() {
        let prefix = |line: &str| match parse(line).unwrap() {
            Command::Get {
                target: GetTarget::Prefix(p),
                ..
            } => p,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(prefix("get 3B8F1C0A2D"), "3b8f1c0a2d");
        assert_eq!(prefix("get 1234567890"), "1234567890");
        assert_eq!(prefix("get abcdef dest"), "abcdef");
        assert!(matches!(
            parse("get 12345").unwrap(),
            Command::Get {
                target: GetTarget::Result(12345),
                ..
            }
        ));
        let err = parse("get abc").unwrap_err().to_string();
        assert!(err.contains("first 6 or more"), "{err}");
        assert!(parse("get xyz123456").is_err());
    }

    #[test]
    fn wrong_usage_says_how_to_use_the_command() {
        let err = |line: &str| parse(line).unwrap_err().to_string();
        assert_eq!(
            err("get"),
            "usage: get <result number | content hash | ticket> [dest]"
        );
        assert_eq!(
            err("get 1 a b"),
            "usage: get <result number | content hash | ticket> [dest]"
        );
        assert!(err("get 0").contains("numbered from 1"));
        assert!(err("get abc").contains("neither a result number nor a content hash"));
        assert_eq!(err("search"), "usage: search <words>");
        assert_eq!(err("start"), "usage: start <folder>");
        assert_eq!(
            err("status now"),
            "`status` takes no arguments; usage: status"
        );
    }

    #[test]
    fn unknown_commands_point_to_help_and_suggest_a_near_name() {
        let err = |line: &str| parse(line).unwrap_err().to_string();
        assert_eq!(
            err("serch foo"),
            "unknown command `serch`; did you mean `search`? (`help` lists the commands)"
        );
        assert_eq!(
            err("frobnicate"),
            "unknown command `frobnicate`; `help` lists the commands"
        );
    }

    #[test]
    fn help_lists_every_command_with_its_usage() {
        let text = help();
        for (_, usage, _) in COMMANDS {
            assert!(text.contains(usage), "{usage} missing from help");
        }
    }
}
