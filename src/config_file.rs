//! `rollcall serve --config FILE`: a TOML file whose keys are the long
//! flag names (`max-entries = 500` is `--max-entries 500`).
//!
//! The file knows no names of its own: every key is looked up among the
//! arguments of the clap [`Command`] being parsed, so a flag added to
//! [`ServeConfig`] works in the file at once. The file's values become
//! `--key=value` arguments appended to the command line, for the keys the
//! command line and the environment (`ROLLCALL_*`) did not set, and the
//! command line is parsed again. So the precedence is flag, then
//! environment, then file, then default, and a file value is checked by the
//! same parser as the flag.
//!
//! Invariant: a key that names no flag is refused with its name (and the
//! closest flag name), never ignored: a typo must not silently leave a
//! limit at its default.

use crate::config::ServeConfig;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The id (and long name) of the argument that names the file.
pub const CONFIG_ARG: &str = "config";

/// `rollcall serve`'s arguments: the file, and every flag of [`ServeConfig`].
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file: keys are the long flag names
    /// (`max-entries = 500`); flags and ROLLCALL_* variables override it.
    #[arg(long = "config", id = CONFIG_ARG, env = "ROLLCALL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The server's settings.
    #[command(flatten)]
    pub serve: ServeConfig,
}

/// Why a configuration file cannot be used.
#[derive(Debug, Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line.
        message: String,
    },
    /// A key names no flag.
    #[error("config file {}: unknown key `{key}`{}", path.display(), suggestion(.closest))]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key as written.
        key: String,
        /// The flag name closest to it, if any is close.
        closest: Option<String>,
    },
    /// A value of a shape the flag cannot take.
    #[error("config file {}: `{key}` {why}", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong with its value.
        why: &'static str,
    },
    /// A value the flag's own parser refuses; the message names the flag.
    #[error("config file {}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The first line of clap's message, e.g. `invalid value 'many'
        /// for '--max-entries <MAX_ENTRIES>': invalid digit found in string`.
        message: String,
    },
    /// The command line itself does not parse (or asks for help): print
    /// it with [`clap::Error::exit`].
    #[error("{0}")]
    Parse(#[from] clap::Error),
}

fn suggestion(closest: &Option<String>) -> String {
    match closest {
        Some(name) => format!(" (did you mean `{name}`?)"),
        None => " (keys are the long flag names of `rollcall serve --help`)".to_owned(),
    }
}

/// Parses `argv` with `command`; when the innermost subcommand matched has
/// a `--config FILE`, parses again with the file's values appended.
/// Help, version and usage errors come back as [`ConfigFileError::Parse`]
/// (call `exit()` on the clap error to print them as clap does).
pub fn parse_with_config(
    command: Command,
    argv: Vec<OsString>,
) -> Result<ArgMatches, ConfigFileError> {
    let matches = command.clone().try_get_matches_from(argv.iter())?;
    let Some((target, target_matches, path)) = config_target(&command, &matches) else {
        return Ok(matches);
    };
    let extra = file_args(target, target_matches, &path, &read(&path)?)?;
    // The command line alone parsed: a failure now is a value from the file.
    command
        .try_get_matches_from(argv.into_iter().chain(extra))
        .map_err(|e| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            ConfigFileError::Invalid {
                path,
                message: first.trim_start_matches("error: ").to_owned(),
            }
        })
}

/// The innermost subcommand matched, if it has the config argument and it
/// was given.
fn config_target<'a>(
    command: &'a Command,
    matches: &'a ArgMatches,
) -> Option<(&'a Command, &'a ArgMatches, PathBuf)> {
    if let Some((name, sub_matches)) = matches.subcommand() {
        return config_target(command.find_subcommand(name)?, sub_matches);
    }
    if !command.get_arguments().any(|a| a.get_id() == CONFIG_ARG) {
        return None;
    }
    // The argument is defined on this command with a PathBuf parser.
    let path = matches.get_one::<PathBuf>(CONFIG_ARG)?;
    Some((command, matches, path.clone()))
}

fn read(path: &Path) -> Result<toml::Table, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigFileError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
}

/// The `--key=value` arguments `table` adds to a command line already
/// parsed into `matches` by `command`: one per value, for every key whose
/// flag the command line and the environment left unset.
pub fn file_args(
    command: &Command,
    matches: &ArgMatches,
    path: &Path,
    table: &toml::Table,
) -> Result<Vec<OsString>, ConfigFileError> {
    let mut out = Vec::new();
    for (key, value) in table {
        let arg = flag_named(command, key).ok_or_else(|| ConfigFileError::UnknownKey {
            path: path.to_owned(),
            key: key.clone(),
            closest: closest_flag(command, key),
        })?;
        let set_by_user = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if set_by_user {
            continue;
        }
        let bad = |why| ConfigFileError::BadValue {
            path: path.to_owned(),
            key: key.clone(),
            why,
        };
        push_values(&mut out, arg, key, value).map_err(bad)?;
    }
    Ok(out)
}

/// The flags a file may set: every argument with a long name, except the
/// file itself and clap's own.
fn file_flags(command: &Command) -> impl Iterator<Item = &Arg> {
    command.get_arguments().filter(|a| {
        let id = a.get_id().as_str();
        a.get_long().is_some() && id != CONFIG_ARG && id != "help" && id != "version"
    })
}

fn flag_named<'a>(command: &'a Command, key: &str) -> Option<&'a Arg> {
    file_flags(command).find(|a| a.get_long() == Some(key))
}

/// The flag name a mistyped key most likely meant: `max_entries` and
/// `max-entires` both give `max-entries`.
fn closest_flag(command: &Command, key: &str) -> Option<String> {
    let wanted = key.trim().to_ascii_lowercase().replace('_', "-");
    file_flags(command)
        .filter_map(Arg::get_long)
        .map(|name| (edit_distance(&wanted, name), name))
        .filter(|(distance, name)| *distance <= (name.len() / 3).max(2))
        .min()
        .map(|(_, name)| name.to_owned())
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// Appends the arguments one key's value stands for.
fn push_values(
    out: &mut Vec<OsString>,
    arg: &Arg,
    key: &str,
    value: &toml::Value,
) -> Result<(), &'static str> {
    if !arg.get_action().takes_values() {
        return push_switch(out, arg, key, value);
    }
    let items = match value {
        toml::Value::Array(items) if matches!(arg.get_action(), ArgAction::Append) => items,
        toml::Value::Array(_) => return Err("takes one value, not a list"),
        single => std::slice::from_ref(single),
    };
    for item in items {
        out.push(format!("--{key}={}", scalar(item)?).into());
    }
    Ok(())
}

/// A switch (`--flag` without a value): `true` or `false` in the file.
fn push_switch(
    out: &mut Vec<OsString>,
    arg: &Arg,
    key: &str,
    value: &toml::Value,
) -> Result<(), &'static str> {
    let toml::Value::Boolean(on) = value else {
        return Err("is a switch: write true or false");
    };
    let given = match arg.get_action() {
        ArgAction::SetFalse => !on,
        _ => *on,
    };
    if given {
        out.push(format!("--{key}").into());
    }
    Ok(())
}

/// A value as the flag would be typed.
fn scalar(value: &toml::Value) -> Result<String, &'static str> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        toml::Value::Array(_) => Err("holds a list inside a list"),
        toml::Value::Table(_) => Err("is a table: write `key = value` at the top level"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, FromArgMatches};
    use std::time::Duration;

    fn command() -> Command {
        ServeArgs::augment_args(Command::new("serve"))
    }

    fn parse(argv: &[&str]) -> Result<ServeConfig, ConfigFileError> {
        let argv = std::iter::once("serve").chain(argv.iter().copied());
        let matches = parse_with_config(command(), argv.map(OsString::from).collect())?;
        Ok(ServeArgs::from_arg_matches(&matches)?.serve)
    }

    /// A file with `text` in the temp dir, named for the test.
    fn file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "rollcall-config-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("the temp dir is writable");
        path
    }

    fn example() -> &'static str {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rollcall.toml")
    }

    #[test]
    fn the_example_file_loads_and_validates() {
        let config = parse(&["--config", example()]).unwrap();
        assert_eq!(config.bind.to_string(), "0.0.0.0:18789");
        let tokens: Vec<&str> = config.tokens.iter().map(|t| t.token.as_str()).collect();
        assert_eq!(tokens, ["dashboard-secret", "ops-secret", "node-secret"]);
        assert!(config.tokens[2].node && config.tokens[2].scopes.is_empty());
        assert_eq!(config.presence_ttl, Duration::from_secs(300));
        assert_eq!(config.max_entries, 500);
        assert_eq!(config.untracked_modes, ["cli", "probe"]);
        assert_eq!(config.trusted_proxies.len(), 1);
        assert_eq!(config.stale_after, Duration::from_secs(120));
        config
            .validate()
            .expect("the example is a servable configuration");
    }

    #[test]
    fn a_flag_overrides_the_file_and_the_file_overrides_defaults() {
        let path = file("override", "max-entries = 500\ncoalesce = \"250ms\"\n");
        let path = path.to_str().unwrap();
        let config = parse(&["--config", path, "--max-entries", "7"]).unwrap();
        assert_eq!(config.max_entries, 7, "the flag wins");
        assert_eq!(
            config.coalesce,
            Duration::from_millis(250),
            "the file wins over the default"
        );
        let config = parse(&["--max-entries", "9", "--config", path]).unwrap();
        assert_eq!(config.max_entries, 9, "wherever the flag stands");
    }

    #[test]
    fn a_repeatable_flag_takes_a_list_and_the_command_line_replaces_it() {
        let path = file("list", "token = [\"a:read\", \"b:admin\"]\n");
        let path = path.to_str().unwrap();
        let config = parse(&["--config", path]).unwrap();
        assert_eq!(config.tokens.len(), 2);
        let config = parse(&["--config", path, "--token", "c"]).unwrap();
        let tokens: Vec<&str> = config.tokens.iter().map(|t| t.token.as_str()).collect();
        assert_eq!(tokens, ["c"], "not merged with the file's");
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name_and_the_closest_flag() {
        let path = file("typo", "max-entires = 5\n");
        let err = parse(&["--config", path.to_str().unwrap()]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown key `max-entires`"), "{text}");
        assert!(text.contains("did you mean `max-entries`?"), "{text}");
        let path = file("snake", "presence_ttl = \"1m\"\n");
        let text = parse(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("`presence_ttl`") && text.contains("`presence-ttl`"),
            "{text}"
        );
        let path = file("far", "colour = \"blue\"\n");
        let text = parse(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("unknown key `colour`") && text.contains("--help"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let path = file("bad", "max-entries = \"many\"\n");
        let text = parse(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("--max-entries") && text.contains("many"),
            "{text}"
        );
        let path = file("table", "[fleet]\nurl = \"redis://x\"\n");
        let text = parse(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(text.contains("`fleet` is a table"), "{text}");
        let path = file("list", "bind = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n");
        let text = parse(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(text.contains("`bind` takes one value"), "{text}");
        let path = file("nested", "config = \"other.toml\"\n");
        let text = parse(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(text.contains("unknown key `config`"), "{text}");
    }

    #[test]
    fn a_missing_or_broken_file_says_which() {
        let text = parse(&["--config", "/nonexistent/rollcall.toml"])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("cannot read the config file /nonexistent/rollcall.toml"),
            "{text}"
        );
        let path = file("syntax", "max-entries = \n");
        let text = parse(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("is not valid TOML") && text.contains("line 1"),
            "{text}"
        );
    }

    #[test]
    fn switches_take_booleans() {
        let command = Command::new("t")
            .arg(Arg::new("json").long("json").action(ArgAction::SetTrue))
            .arg(
                Arg::new(CONFIG_ARG)
                    .long("config")
                    .value_parser(clap::value_parser!(PathBuf)),
            );
        let matches = command.clone().get_matches_from(["t"]);
        let path = Path::new("f.toml");
        let on: toml::Table = "json = true".parse().unwrap();
        assert_eq!(
            file_args(&command, &matches, path, &on).unwrap(),
            ["--json"]
        );
        let off: toml::Table = "json = false".parse().unwrap();
        assert!(
            file_args(&command, &matches, path, &off)
                .unwrap()
                .is_empty()
        );
        let bad: toml::Table = "json = 1".parse().unwrap();
        let text = file_args(&command, &matches, path, &bad)
            .unwrap_err()
            .to_string();
        assert!(text.contains("`json` is a switch"), "{text}");
    }

    #[test]
    fn edit_distance_counts_single_char_edits() {
        assert_eq!(edit_distance("max-entires", "max-entries"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("bind", "bind"), 0);
    }
}
