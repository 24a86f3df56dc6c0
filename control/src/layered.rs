//! One way to fill a clap configuration struct from three layers, shared by `banyan-control`
//! and `banyan-relay`: **flag > environment variable > TOML file > default**.
//!
//! - The flag `--some-flag` has the variable `<PREFIX>SOME_FLAG` and the TOML key `some-flag`.
//!   An empty variable counts as unset.
//! - The TOML file is named by the `config` argument (`--config` / `<PREFIX>CONFIG`); a key that
//!   names no flag, or `config` itself, is an error.
//! - A repeatable flag's list from a higher layer replaces a lower layer's.
//!
//! How: clap parses the command line alone first (which answers `--help`/`--version` and tells
//! which flags were given), then again with each variable of a flag not given placed before the
//! real arguments as `--flag=value`, so variables go through the flags' value parsers (each is
//! parsed alone first, so an error names the variable; clap's own `env` reads only the process
//! environment, and [`load`] takes the variables from a function so tests can give them).
//! [`ArgMatches::value_source`](clap::ArgMatches::value_source) then tells explicit values from
//! defaults: the struct is rendered as a TOML table, the file's keys replace every value that
//! was not explicit, and serde reads the merged table back.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The environment variable for a flag's argument id: (`BANYAN_RELAY_`, `max_sessions`) →
/// `BANYAN_RELAY_MAX_SESSIONS`.
pub fn env_var_name(prefix: &str, id: &str) -> String {
    format!("{prefix}{}", id.replace('-', "_").to_ascii_uppercase())
}

/// `result` of [`load`] for a binary: a `--help`/`--version` request (an error holding that
/// [`clap::Error`]) prints and exits the process (status 0), like any clap program; every
/// other result comes back as it is.
pub fn exit_on_help<C>(result: anyhow::Result<C>) -> anyhow::Result<C> {
    if let Err(err) = &result {
        if let Some(clap_err) = err.downcast_ref::<clap::Error>() {
            if matches!(
                clap_err.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) {
                clap_err.exit();
            }
        }
    }
    result
}

/// `C` from `args` (the first item is the program name), the variables `env` returns for
/// `prefix` and the file named by the `config` argument, merged in the order above.
///
/// A repeatable flag's variable is split at any of `list_separators` (none: one value).
/// A `--help`/`--version` request comes back as an error holding a [`clap::Error`].
pub fn load<C, I, T, E>(prefix: &str, list_separators: &[char], args: I, env: E) -> anyhow::Result<C>
where
    C: CommandFactory + FromArgMatches + Serialize + DeserializeOwned,
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
    E: Fn(&str) -> Option<String>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = C::command();
    let program = args.first().cloned().unwrap_or_else(|| cmd.get_name().into());
    let flags = cmd.clone().try_get_matches_from(&args)?;

    let mut layered = vec![program.clone()];
    for arg in cmd.get_arguments() {
        let (id, Some(long)) = (arg.get_id().as_str(), arg.get_long()) else {
            continue;
        };
        let var = env_var_name(prefix, id);
        let value = match env(&var) {
            Some(value) if !explicit(&flags, id) && !value.trim().is_empty() => value,
            _ => continue,
        };
        let values: Vec<&str> = if matches!(arg.get_action(), clap::ArgAction::Append) {
            value
                .split(list_separators)
                .filter(|v| !v.trim().is_empty())
                .collect()
        } else {
            vec![value.trim()]
        };
        for v in values {
            let flag = OsString::from(format!("--{long}={}", v.trim()));
            cmd.clone()
                .try_get_matches_from([program.clone(), flag.clone()])
                .with_context(|| format!("environment variable {var}={value:?}"))?;
            layered.push(flag);
        }
    }
    layered.extend(args.into_iter().skip(1));
    let matches = cmd.clone().try_get_matches_from(layered)?;
    let config = C::from_arg_matches(&matches)?;
    let Some(path) = matches.try_get_one::<PathBuf>("config").ok().flatten() else {
        return Ok(config);
    };

    let in_file = || format!("config file {}", path.display());
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", in_file()))?;
    let file: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", in_file()))?;
    let rendered = toml::Table::try_from(&config).context("internal error: rendering the configuration")?;
    let mut merged = rendered.clone();
    for (key, value) in file {
        let id = key.replace('-', "_");
        anyhow::ensure!(
            id != "config",
            "{}: `config` cannot be set inside a config file",
            in_file()
        );
        anyhow::ensure!(
            cmd.get_arguments().any(|a| a.get_id() == id.as_str()),
            "{}: unknown key `{key}`",
            in_file()
        );
        if !explicit(&matches, &id) {
            // Checked alone so the error names the key (serde's `flatten` forgets it).
            let mut alone = rendered.clone();
            alone.insert(key.clone(), value.clone());
            toml::Value::Table(alone)
                .try_into::<C>()
                .with_context(|| format!("{}, key `{key}`", in_file()))?;
            merged.insert(key, value);
        }
    }
    toml::Value::Table(merged).try_into().with_context(in_file)
}

/// One setting of a component's layering test: its flag name, its value in the TOML file, in
/// its variable and as a flag, what the loaded config then holds at each layer (default, file,
/// env, flag) and how to read that back.
pub type Layering<C> = (
    &'static str,
    [&'static str; 3],
    [&'static str; 4],
    fn(&C) -> String,
);

/// For a component's tests of the order: each setting loaded by `load` (the component's loader:
/// args after the program name, variables) with `base` alone, then with a TOML file (written at
/// `file`) holding its value, then also with its variable, then also with its flag. An error
/// names the first setting that does not hold what it should.
pub fn check_layering<C>(
    load: impl Fn(&[&str], &[(&str, &str)]) -> anyhow::Result<C>,
    prefix: &str,
    base: &[&str],
    file: &Path,
    settings: &[Layering<C>],
) -> anyhow::Result<()> {
    let path = file.to_str().context("the file's path is not UTF-8")?;
    let with_file = [base, &["--config", path]].concat();
    for (key, [in_file, in_env, in_flag], expected, get) in settings {
        std::fs::write(file, format!("{key} = {in_file}\n"))?;
        let flag = format!("--{key}={in_flag}");
        let var = env_var_name(prefix, key);
        let env = [(var.as_str(), *in_env)];
        let layers = [
            load(base, &[]),
            load(&with_file, &[]),
            load(&with_file, &env),
            load(&[&with_file[..], &[flag.as_str()]].concat(), &env),
        ];
        for ((layer, config), want) in ["default", "file", "env", "flag"]
            .iter()
            .zip(layers)
            .zip(expected)
        {
            let got = get(&config.with_context(|| format!("{key} from the {layer}"))?);
            anyhow::ensure!(got == *want, "{key} from the {layer}: {got:?}, expected {want:?}");
        }
    }
    Ok(())
}

/// True when the argument's value came from the command line (or a variable placed there).
fn explicit(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// `Duration` as humantime text (`"5s"`, `"1m 30s"`), for `#[serde(with = ...)]`.
pub mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// `5s`, `1m 30s`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Anything [`humantime::parse_duration`] reads.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration like \"5s\" or \"500ms\": {e}"
            ))
        })
    }
}
