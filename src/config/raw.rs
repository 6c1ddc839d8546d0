//! Passes over the parsed `toml::Table`, before serde sees it: `${VAR}` interpolation,
//! `DOORMAN_*` overrides, and a walk against the schema that reports unknown keys and wrong
//! types (then removes them, so later checks still run) and reads `*_file` secrets.

use std::collections::HashMap;
use std::path::Path;

use toml::{Table, Value};

use super::file::{Fields, Kind, ROOT};
use super::{ConfigError, SECRET_KEYS};

const ENV_PREFIX: &str = "DOORMAN_";

/// `DOORMAN_*` variables that are not configuration keys but are read by the CLI.
const NOT_KEYS: &[&str] = &["DOORMAN_CONFIG"];

fn push(errors: &mut Vec<ConfigError>, key: &str, message: impl Into<String>) {
    errors.push(ConfigError {
        key: key.into(),
        message: message.into(),
    });
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.into()
    } else {
        format!("{path}.{key}")
    }
}

// ---- ${VAR} interpolation ----

/// Replaces `${VAR}` in every string value (not in keys). Values from the environment and from
/// `*_file` are applied later and are never interpolated: secrets may contain `${`.
pub(super) fn interpolate(
    table: &mut Table,
    path: &str,
    env: &HashMap<String, String>,
    errors: &mut Vec<ConfigError>,
) {
    for (key, value) in table.iter_mut() {
        interpolate_value(value, &join(path, key), env, errors);
    }
}

fn interpolate_value(
    value: &mut Value,
    path: &str,
    env: &HashMap<String, String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        Value::String(s) => match interpolate_str(s, env) {
            Ok(new) => *s = new,
            Err(message) => push(errors, path, message),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{path}[{i}]"), env, errors);
            }
        }
        Value::Table(t) => interpolate(t, path, env, errors),
        _ => {}
    }
}

fn interpolate_str(s: &str, env: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        let (before, after) = rest.split_at(i);
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                return Err(
                    "unterminated `${`; write `${NAME}`, or `$${` for a literal `${`".into(),
                );
            };
            let (name, tail) = tail.split_at(end);
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a variable reference; names are letters, digits and \
                     `_` (write `$${{` for a literal `${{`)"
                ));
            }
            let Some(v) = env.get(name) else {
                return Err(format!(
                    "environment variable {name} is not set; set it, or write `$${{` for a \
                     literal `${{`"
                ));
            };
            out.push_str(v);
            rest = tail.get(1..).unwrap_or_default();
        } else {
            out.push('$');
            rest = after.get(1..).unwrap_or_default();
        }
    }
    out.push_str(rest);
    Ok(out)
}

// ---- DOORMAN_* overrides ----

/// Every key the environment can set: its table path and kind. Arrays of tables are skipped,
/// and each secret key `K` also gets `K_file`.
fn settable() -> Vec<(Vec<String>, Kind)> {
    fn walk(fields: Fields, prefix: &[String], out: &mut Vec<(Vec<String>, Kind)>) {
        for &(name, kind) in fields {
            let path = [prefix, &[name.to_string()]].concat();
            match kind {
                Kind::Table(sub) => walk(sub, &path, out),
                Kind::Tables(_) | Kind::StrMap => {}
                _ => {
                    if SECRET_KEYS.contains(&name) {
                        out.push(([prefix, &[format!("{name}_file")]].concat(), Kind::Str));
                    }
                    out.push((path, kind));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(ROOT, &[], &mut out);
    out
}

fn env_name(path: &[String]) -> String {
    format!("{ENV_PREFIX}{}", path.join("__").to_uppercase())
}

/// Applies `DOORMAN_SESSION__IDLE_TIMEOUT=1h`-style variables to the table. An empty value
/// counts as unset (compose files pass `VAR=` for "no value"); a variable naming no key is a
/// warning, not an error, as scripts export things like `DOORMAN_BIN`. Each key set is noted
/// in `origins` as (key, variable), so [`name_env_origins`] can say where a bad value came from.
pub(super) fn apply_env(
    table: &mut Table,
    env: &HashMap<String, String>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
    origins: &mut Vec<(String, String)>,
) {
    let settable = settable();
    let mut vars: Vec<(&String, &String)> = env
        .iter()
        .filter(|(k, v)| k.starts_with(ENV_PREFIX) && !v.is_empty())
        .collect();
    vars.sort();
    for (var, raw) in vars {
        if NOT_KEYS.contains(&var.as_str()) {
            continue;
        }
        let Some((path, kind)) = settable.iter().find(|(p, _)| env_name(p) == *var) else {
            warnings.push(unknown_env_warning(var, &settable));
            continue;
        };
        let key = path.join(".");
        if file_sets(table, path) {
            warnings.push(format!("{var} overrides {key} from {FILE_MARK}"));
        }
        origins.push((key.clone(), var.clone()));
        // `K_file` from the environment: errors about `K` (its contents) come from it too.
        if let Some(base) = key
            .strip_suffix("_file")
            .filter(|b| SECRET_KEYS.iter().any(|s| b.rsplit('.').next() == Some(*s)))
        {
            origins.push((base.to_string(), var.clone()));
        }
        let value = match kind {
            Kind::Int => match raw.trim().parse::<i64>() {
                Ok(n) => Value::Integer(n),
                Err(_) => {
                    push(
                        errors,
                        &key,
                        format!("{raw:?} is not a whole number; set it to e.g. 10"),
                    );
                    continue;
                }
            },
            Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                "true" => Value::Boolean(true),
                "false" => Value::Boolean(false),
                _ => {
                    push(
                        errors,
                        &key,
                        format!("{raw:?} is not a boolean; set it to true or false"),
                    );
                    continue;
                }
            },
            Kind::StrList => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.into()))
                    .collect(),
            ),
            _ => Value::String(raw.clone()),
        };
        set_path(table, path, value);
    }
}

/// Renames errors about keys that a `DOORMAN_*` variable set after that variable, e.g.
/// `DOORMAN_LOGIN__MAX_FAILURES_PER_IP (environment): login.max_failures_per_ip: ...`: the
/// operator must know the bad value is not in the file. Secret values are never in messages.
pub(super) fn name_env_origins(errors: &mut [ConfigError], origins: &[(String, String)]) {
    for e in errors.iter_mut() {
        let from = origins.iter().find(|(key, _)| {
            e.key == *key
                || e.key
                    .strip_prefix(key.as_str())
                    .is_some_and(|rest| rest.starts_with('[') || rest.starts_with('.'))
        });
        if let Some((_, var)) = from {
            e.message = format!("{}: {}", e.key, e.message);
            e.key = format!("{var} (environment)");
        }
    }
}

/// Sets `path` in `table`, creating tables on the way. If something in the way is not a table
/// the override is dropped: the schema walk reports that key's type anyway.
fn set_path(table: &mut Table, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(inner) = entry else { return };
        t = inner;
    }
    // The environment wins over the file, including over the other form of a secret.
    if SECRET_KEYS.contains(&last.as_str()) {
        t.remove(&format!("{last}_file"));
    } else if let Some(base) = last
        .strip_suffix("_file")
        .filter(|b| SECRET_KEYS.contains(b))
    {
        t.remove(base);
    }
    t.insert(last.clone(), value);
}

/// Stands for the config file's path in override warnings; `load_named` puts the path in.
pub(super) const FILE_MARK: &str = "the config file";

/// Whether the file's table already sets `path` (a secret in either of its two forms).
fn file_sets(table: &Table, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut t = table;
    for p in parents {
        let Some(Value::Table(inner)) = t.get(p) else {
            return false;
        };
        t = inner;
    }
    let other = match last.strip_suffix("_file") {
        Some(base) if SECRET_KEYS.contains(&base) => Some(base.to_string()),
        _ if SECRET_KEYS.contains(&last.as_str()) => Some(format!("{last}_file")),
        _ => None,
    };
    t.contains_key(last) || other.is_some_and(|o| t.contains_key(&o))
}

/// Every array of tables, at any depth: its dotted path (e.g. `forward_auth.rules`).
fn table_arrays(fields: Fields, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for &(name, kind) in fields {
        let path = [prefix, &[name.to_string()]].concat();
        match kind {
            Kind::Tables(_) => out.push(path),
            Kind::Table(sub) => table_arrays(sub, &path, out),
            _ => {}
        }
    }
}

fn unknown_env_warning(var: &str, settable: &[(Vec<String>, Kind)]) -> String {
    let mut arrays = Vec::new();
    table_arrays(ROOT, &[], &mut arrays);
    for path in arrays {
        let name = env_name(&path);
        if var == name || var.starts_with(&format!("{name}_")) {
            return format!(
                "{var} is ignored: [[{}]] cannot be set from the environment; use the file",
                path.join(".")
            );
        }
    }
    let names: Vec<String> = settable.iter().map(|(p, _)| env_name(p)).collect();
    match closest(var, names.iter().map(String::as_str)) {
        Some(best) => {
            format!("{var} is ignored: it names no configuration key (did you mean {best}?)")
        }
        None => format!("{var} is ignored: it names no configuration key"),
    }
}

// ---- schema walk ----

/// Checks `table` against `fields`: reads `*_file` secrets, reports unknown keys and wrong types
/// and removes them, so serde then succeeds and `validate` can report the remaining problems.
pub(super) fn check(
    table: &mut Table,
    fields: Fields,
    path: &str,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) {
    read_secret_files(table, fields, path, base_dir, errors);
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let key_path = join(path, &key);
        let ok = match (fields.iter().find(|(n, _)| *n == key), table.get_mut(&key)) {
            (Some(&(_, kind)), Some(value)) => {
                check_value(value, kind, &key_path, base_dir, errors)
            }
            _ => {
                push(errors, &key_path, unknown_key_message(&key, fields));
                false
            }
        };
        if !ok {
            table.remove(&key);
        }
    }
}

fn check_value(
    value: &mut Value,
    kind: Kind,
    path: &str,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> bool {
    match (kind, value) {
        (Kind::Str | Kind::Duration, Value::String(_))
        | (Kind::Int, Value::Integer(_))
        | (Kind::Bool, Value::Boolean(_)) => true,
        (Kind::StrList, Value::Array(items)) => {
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                if !item.is_str() {
                    push(
                        errors,
                        &format!("{path}[{i}]"),
                        format!("expected a string, found {}", describe(item)),
                    );
                    ok = false;
                }
            }
            ok
        }
        (Kind::Table(sub), Value::Table(t)) => {
            check(t, sub, path, base_dir, errors);
            true
        }
        (Kind::StrMap, Value::Table(t)) => {
            let mut ok = true;
            for (k, v) in t.iter() {
                if !v.is_str() {
                    push(
                        errors,
                        &join(path, k),
                        format!("expected a string, found {}", describe(v)),
                    );
                    ok = false;
                }
            }
            ok
        }
        (Kind::Tables(sub), Value::Array(items)) => {
            let mut ok = true;
            for (i, item) in items.iter_mut().enumerate() {
                let item_path = format!("{path}[{i}]");
                match item {
                    Value::Table(t) => check(t, sub, &item_path, base_dir, errors),
                    other => {
                        push(
                            errors,
                            &item_path,
                            format!("expected a table, found {}", describe(other)),
                        );
                        ok = false;
                    }
                }
            }
            ok
        }
        (Kind::Tables(_), Value::Table(_)) => {
            let name = path.rsplit('.').next().unwrap_or(path);
            let m = format!("expected an array of tables; write [[{name}]] before each entry");
            push(errors, path, m);
            false
        }
        (Kind::Duration, Value::Integer(_) | Value::Float(_)) => {
            push(
                errors,
                path,
                "expected a duration string, found a number; write a unit, e.g. \"90s\"",
            );
            false
        }
        (kind, v) => {
            let expected = match kind {
                Kind::Str => "a string",
                Kind::Duration => "a duration string like \"90s\"",
                Kind::Int => "an integer",
                Kind::Bool => "true or false",
                Kind::StrList => "an array of strings, e.g. [\"a\", \"b\"]",
                Kind::Table(_) => "a table",
                Kind::StrMap => "a table of strings, e.g. { nickname = \"preferred_username\" }",
                Kind::Tables(_) => "an array of tables",
            };
            push(
                errors,
                path,
                format!("expected {expected}, found {}", describe(v)),
            );
            false
        }
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// Replaces `K_file = "path"` with `K = <file contents>` for each secret key `K` of this table.
fn read_secret_files(
    table: &mut Table,
    fields: Fields,
    path: &str,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) {
    for &key in SECRET_KEYS {
        if !fields.iter().any(|(n, _)| *n == key) {
            continue;
        }
        let file_key = format!("{key}_file");
        let Some(value) = table.remove(&file_key) else {
            continue;
        };
        let file_path = join(path, &file_key);
        let Value::String(name) = value else {
            push(
                errors,
                &file_path,
                format!("expected a file path string, found {}", describe(&value)),
            );
            continue;
        };
        if table.contains_key(key) {
            push(
                errors,
                &file_path,
                format!("set either `{key}` or `{file_key}`, not both"),
            );
            continue;
        }
        let full = base_dir.join(&name);
        match std::fs::read_to_string(&full) {
            Ok(text) => {
                table.insert(
                    key.into(),
                    Value::String(text.trim_end_matches(['\n', '\r']).into()),
                );
            }
            Err(e) => push(
                errors,
                &file_path,
                format!(
                    "cannot read {}: {e}; check the path (relative paths are relative to the \
                     config file's directory) and make the file readable by the user doorman \
                     runs as (in the image uid 10001: chown 10001, or group 10001 with mode \
                     0640)",
                    full.display()
                ),
            ),
        }
    }
}

// ---- hints ----

fn unknown_key_message(key: &str, fields: Fields) -> String {
    let mut candidates: Vec<String> = fields.iter().map(|(n, _)| n.to_string()).collect();
    for &(n, _) in fields {
        if SECRET_KEYS.contains(&n) {
            candidates.push(format!("{n}_file"));
        }
    }
    if let Some(best) = closest(key, candidates.iter().map(String::as_str)) {
        return format!("unknown key; did you mean `{best}`?");
    }
    // A right key in the wrong table, usually a top-level key written below a [table] header.
    if let Some(home) = home_of(key, ROOT, "") {
        if home.is_empty() {
            return format!(
                "unknown key here; `{key}` is a top-level key: in TOML every key after a \
                 [table] header belongs to that table, so move it above the first header"
            );
        }
        // A name used by several tables (`idle_timeout`: [server] and [session]): say all.
        let mut homes = Vec::new();
        homes_of(key, ROOT, "", &mut homes);
        let homes = if homes.len() > 1 {
            homes.join(" or ")
        } else {
            home
        };
        return format!("unknown key here; `{key}` belongs in {homes}");
    }
    let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    format!(
        "unknown key; remove it (known keys here: {})",
        names.join(", ")
    )
}

/// The table (`""` for the top level, `[session]`, `[[clients]]`) whose schema has `key`.
fn home_of(key: &str, fields: Fields, name: &str) -> Option<String> {
    if fields.iter().any(|(n, _)| *n == key) {
        return Some(name.to_string());
    }
    fields.iter().find_map(|&(n, kind)| match kind {
        Kind::Table(sub) => home_of(
            key,
            sub,
            &format!("[{}]", join(name.trim_matches(['[', ']']), n)),
        ),
        Kind::Tables(sub) => home_of(key, sub, &format!("[[{n}]]")),
        _ => None,
    })
}

/// Every table whose schema has `key`, in schema order.
fn homes_of(key: &str, fields: Fields, name: &str, out: &mut Vec<String>) {
    if fields.iter().any(|(n, _)| *n == key) {
        out.push(name.to_string());
    }
    for &(n, kind) in fields {
        match kind {
            Kind::Table(sub) => homes_of(
                key,
                sub,
                &format!("[{}]", join(name.trim_matches(['[', ']']), n)),
                out,
            ),
            Kind::Tables(sub) => homes_of(key, sub, &format!("[[{n}]]"), out),
            _ => {}
        }
    }
}

/// The candidate nearest to `word` by edit distance, if near enough to be a likely typo.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 4).max(2);
    candidates
        .map(|c| (levenshtein(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev_diag = i;
        let mut next = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let del = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let ins = next.last().copied().unwrap_or(usize::MAX);
            let sub = prev_diag + usize::from(ca != *cb);
            prev_diag = del;
            next.push(sub.min(del.saturating_add(1)).min(ins.saturating_add(1)));
        }
        row = next;
    }
    row.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("idle_timout", "idle_timeout"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn interpolation_escapes_and_reports() {
        let env = HashMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(interpolate_str("${A}-$${A}-$5", &env).unwrap(), "x-${A}-$5");
        assert!(interpolate_str("${B}", &env)
            .unwrap_err()
            .contains("B is not set"));
        assert!(interpolate_str("${A", &env).is_err());
        assert!(interpolate_str("${}", &env).is_err());
    }

    #[test]
    fn env_names_cover_nested_keys() {
        let names: Vec<String> = settable().iter().map(|(p, _)| env_name(p)).collect();
        assert!(names.contains(&"DOORMAN_SESSION__IDLE_TIMEOUT".to_string()));
        assert!(names.contains(&"DOORMAN_TRUSTED_PROXIES".to_string()));
        assert!(!names.iter().any(|n| n.starts_with("DOORMAN_CLIENTS")));
    }
}
