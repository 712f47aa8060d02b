//! The name a package gets in a destination folder: the option `file_name_pattern`, such as
//! `{computer_dns_name}_{action_id}.zip`, so that a folder of packages says which device each
//! one is from.
//!
//! A pattern holds only characters that are safe in a file name everywhere (letters, digits,
//! `.`, `_`, `-`) and placeholders, and always `{action_id}`, so that two packages never get one
//! name. The values put in are safe too: an action id that could not be a file name is refused,
//! and a device's name from the service has every other character replaced by `_`.

use crate::error::{Error, Result};
use crate::service::machine_actions::{ActionFields, MachineAction};

/// A parsed `file_name_pattern`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileNamePattern {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// What a placeholder stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    ActionId,
    MachineId,
    ComputerDnsName,
    /// The computer name before its first dot.
    ComputerName,
}

impl Field {
    const ALL: [(Field, &'static str); 4] = [
        (Field::ActionId, "action_id"),
        (Field::MachineId, "machine_id"),
        (Field::ComputerDnsName, "computer_dns_name"),
        (Field::ComputerName, "computer_name"),
    ];

    /// A placeholder's name, ignoring case and underscores: `{action_id}` is `{ActionId}` as a
    /// PowerShell user writes it.
    fn named(name: &str) -> Option<Field> {
        let folded =
            |text: &str| text.chars().filter(|c| *c != '_').map(|c| c.to_ascii_lowercase()).collect::<String>();
        let wanted = folded(name);
        Self::ALL.iter().find(|(_, known)| folded(known) == wanted).map(|(field, _)| *field)
    }
}

/// The longest pattern: a file name must stay well under every system's limit (255).
const MAX_PATTERN_CHARS: usize = 120;
/// A device's name is cut to this many characters in a file name.
const MAX_VALUE_CHARS: usize = 64;

fn safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

impl Default for FileNamePattern {
    /// `{action_id}.zip`.
    fn default() -> Self {
        Self { parts: vec![Part::Field(Field::ActionId), Part::Text(".zip".to_owned())] }
    }
}

impl FileNamePattern {
    /// Parses the option's value (`key` names it in errors).
    pub(crate) fn parse(key: &str, value: &str) -> Result<Self> {
        let names = Field::ALL.iter().map(|(_, name)| format!("{{{name}}}")).collect::<Vec<_>>().join(", ");
        let refuse = |why: String| {
            Error::invalid_argument(format!(
                "option '{key}' takes letters, digits, '.', '_', '-' and the placeholders {names}, with \
                 {{action_id}} in it; '{}' {why}",
                value.escape_debug()
            ))
        };
        if value.chars().count() > MAX_PATTERN_CHARS {
            return Err(refuse(format!("is longer than {MAX_PATTERN_CHARS} characters")));
        }
        let mut parts = Vec::new();
        let mut rest = value;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let (name, tail) =
                    after.split_once('}').ok_or_else(|| refuse("has a '{' without its '}'".to_owned()))?;
                let field =
                    Field::named(name).ok_or_else(|| refuse(format!("has the unknown placeholder {{{name}}}")))?;
                parts.push(Part::Field(field));
                rest = tail;
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let text = &rest[..end];
                if let Some(bad) = text.chars().find(|c| !safe_char(*c)) {
                    return Err(refuse(format!("holds '{}', which is not safe in a file name", bad.escape_debug())));
                }
                parts.push(Part::Text(text.to_owned()));
                rest = &rest[end..];
            }
        }
        if !parts.contains(&Part::Field(Field::ActionId)) {
            return Err(refuse("has no {action_id}, so two packages could get one name".to_owned()));
        }
        if matches!(parts.first(), Some(Part::Text(text)) if text.starts_with('.')) {
            return Err(refuse("starts with '.', which makes a hidden file".to_owned()));
        }
        Ok(Self { parts })
    }

    /// Whether the name needs the action's device, which a download then looks up.
    pub(crate) fn names_the_device(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Field(field) if *field != Field::ActionId))
    }

    /// The file name of `action_id`'s package; `action` (the action as the service sent it)
    /// gives the device, `unknown` standing for what it does not say.
    pub(crate) fn file_name(&self, action_id: &str, action: Option<&MachineAction>) -> Result<String> {
        let fields = action.map(MachineAction::fields);
        let device = |field: fn(&ActionFields) -> &Option<String>| {
            fields.and_then(|fields| field(fields).as_deref()).unwrap_or("unknown")
        };
        let mut name = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => name.push_str(text),
                Part::Field(Field::ActionId) => name.push_str(action_id_as_file_name(action_id)?),
                Part::Field(Field::MachineId) => name.push_str(&safe_value(device(|f| &f.machine_id))),
                Part::Field(Field::ComputerDnsName) => name.push_str(&safe_value(device(|f| &f.computer_dns_name))),
                Part::Field(Field::ComputerName) => {
                    let host = device(|f| &f.computer_dns_name).split('.').next().unwrap_or_default();
                    name.push_str(&safe_value(host));
                }
            }
        }
        Ok(name)
    }
}

/// An action id as part of a file name: refused when it holds a character that no file name
/// may hold on Windows or Unix (the caller can always give a file path instead of a folder).
fn action_id_as_file_name(action_id: &str) -> Result<&str> {
    let forbidden = |c: char| c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|');
    if action_id.is_empty() || action_id.contains(forbidden) || action_id.starts_with('.') {
        return Err(Error::invalid_argument(format!(
            "action id '{}' cannot be a file name; give the destination as a file path",
            action_id.escape_debug()
        )));
    }
    Ok(action_id)
}

/// A value from the service as part of a file name: characters that are not safe become `_`,
/// a leading dot too, and it is cut to `MAX_VALUE_CHARS`.
fn safe_value(value: &str) -> String {
    let safe: String = value.chars().take(MAX_VALUE_CHARS).map(|c| if safe_char(c) { c } else { '_' }).collect();
    match safe.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None if safe.is_empty() => "unknown".to_owned(),
        None => safe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::entity::Entity;

    fn action(json: serde_json::Value) -> MachineAction {
        MachineAction::new(Entity::parse(json.to_string()).unwrap(), "test").unwrap()
    }

    #[test]
    fn the_default_is_the_action_id_dot_zip() {
        let pattern = FileNamePattern::default();
        assert_eq!(pattern, FileNamePattern::parse("file_name_pattern", "{action_id}.zip").unwrap());
        assert_eq!(pattern.file_name("abc-123", None).unwrap(), "abc-123.zip");
        assert!(!pattern.names_the_device());
        for bad in ["../evil", "a/b", "c:d", ".hidden", ""] {
            assert!(pattern.file_name(bad, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn placeholders_ignore_case_and_underscores_and_name_the_device() {
        let pattern = FileNamePattern::parse("file_name_pattern", "{ComputerDnsName}_{ActionId}.zip").unwrap();
        assert!(pattern.names_the_device());
        let seen = action(serde_json::json!({
            "id": "a1", "status": "Succeeded", "machineId": "5eed01", "computerDnsName": "ws-0001.contoso.test"
        }));
        assert_eq!(pattern.file_name("a1", Some(&seen)).unwrap(), "ws-0001.contoso.test_a1.zip");
        let short = FileNamePattern::parse("k", "{computer_name}-{machine_id}-{action_id}").unwrap();
        assert_eq!(short.file_name("a1", Some(&seen)).unwrap(), "ws-0001-5eed01-a1");
        assert_eq!(short.file_name("a1", None).unwrap(), "unknown-unknown-a1");
    }

    #[test]
    fn a_device_name_from_the_service_is_made_safe() {
        let pattern = FileNamePattern::parse("k", "{computer_dns_name}_{action_id}.zip").unwrap();
        let hostile = action(serde_json::json!({
            "id": "a1", "status": "Succeeded", "computerDnsName": "../../etc/pass wd\u{1b}:*?"
        }));
        assert_eq!(pattern.file_name("a1", Some(&hostile)).unwrap(), "_._.._etc_pass_wd_____a1.zip");
        let long = action(serde_json::json!({ "id": "a1", "status": "Succeeded", "computerDnsName": "x".repeat(500) }));
        assert_eq!(pattern.file_name("a1", Some(&long)).unwrap().len(), MAX_VALUE_CHARS + "_a1.zip".len());
    }

    #[test]
    fn unsafe_text_unknown_placeholders_and_patterns_without_the_action_id_are_refused() {
        for (bad, why) in [
            ("{computer_name}.zip", "no {action_id}"),
            ("../{action_id}.zip", "'/'"),
            ("{action_id} copy.zip", "' '"),
            ("{action_id}.zip{", "without its '}'"),
            ("{device}_{action_id}.zip", "unknown placeholder {device}"),
            (".{action_id}", "hidden"),
        ] {
            let err = FileNamePattern::parse("file_name_pattern", bad).unwrap_err();
            assert!(err.message().contains(why), "{bad}: {err}");
            assert!(err.message().contains("{computer_dns_name}"), "{err}");
        }
        let err = FileNamePattern::parse("k", &format!("{{action_id}}{}", "x".repeat(200))).unwrap_err();
        assert!(err.message().contains("longer than"), "{err}");
    }
}
