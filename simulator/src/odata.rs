//! The part of OData's `$filter` that the Defender API answers, as a tokenizer, a parser and an
//! evaluator over the JSON entities the simulator serves.
//!
//! Supported: `eq`, `ne`, `gt`, `ge`, `lt`, `le`; `and`, `or`, `not`, parentheses;
//! `startswith(property, 'text')`; `collection/any(t: t eq 'x')` on a collection of strings;
//! literals: strings in single quotes (`''` is a quote), unquoted ISO 8601 date-times
//! (`2024-01-02T03:04:05Z`), numbers, `true`, `false`, `null`. String comparisons ignore ASCII
//! case, as the service's do; `gt`/`ge`/`lt`/`le` compare date-times as instants and numbers as
//! numbers. Anything else (an unknown property, a function the service does not offer, a
//! malformed expression) is an error that the API answers with 400.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A parsed `$filter`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Filter {
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Compare {
        property: String,
        op: Comparison,
        literal: Literal,
    },
    StartsWith {
        property: String,
        prefix: String,
    },
    /// `property/any(variable: variable eq 'value')`.
    AnyEq {
        property: String,
        value: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Comparison {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    String(String),
    DateTime(DateTime<Utc>),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    String(String),
    Open,
    Close,
    Comma,
    Colon,
    Slash,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' | ':' | '/' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    ',' => Token::Comma,
                    ':' => Token::Colon,
                    _ => Token::Slash,
                });
            }
            '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\'')) if chars.next_if(|&(_, next)| next == '\'').is_some() => value.push('\''),
                        Some((_, '\'')) => break,
                        Some((_, c)) => value.push(c),
                        None => return Err(format!("the string that starts at position {at} has no closing quote")),
                    }
                }
                tokens.push(Token::String(value));
            }
            // A word: a name, a keyword, a number or an unquoted date-time (which holds ':').
            c if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '$') => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    let date_part = c == ':' && looks_like_date_time(&word);
                    if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '$') || date_part {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(format!("unexpected character '{other}' at position {at}")),
        }
    }
    Ok(tokens)
}

/// `2024-01-02T03` and longer: the start of an unquoted date-time literal.
fn looks_like_date_time(word: &str) -> bool {
    let bytes = word.as_bytes();
    bytes.len() >= 13 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-' && bytes[10] == b'T'
}

/// Parses `text`; `properties` are the names the entity may be filtered on.
pub(crate) fn parse(text: &str, properties: &[&str]) -> Result<Filter, String> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, at: 0, properties };
    let filter = parser.or()?;
    match parser.peek() {
        None => Ok(filter),
        Some(token) => Err(format!("unexpected {} after a complete expression", describe(token))),
    }
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    properties: &'a [&'a str],
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(word) => format!("'{word}'"),
        Token::String(value) => format!("the string '{value}'"),
        Token::Open => "'('".to_owned(),
        Token::Close => "')'".to_owned(),
        Token::Comma => "','".to_owned(),
        Token::Colon => "':'".to_owned(),
        Token::Slash => "'/'".to_owned(),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Result<Token, String> {
        let token = self.tokens.get(self.at).cloned().ok_or("the expression ends too early")?;
        self.at += 1;
        Ok(token)
    }

    fn expect(&mut self, expected: Token) -> Result<(), String> {
        let token = self.next()?;
        if token == expected {
            Ok(())
        } else {
            Err(format!("expected {}, found {}", describe(&expected), describe(&token)))
        }
    }

    fn keyword(&mut self, keyword: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Word(word)) if word == keyword);
        if found {
            self.at += 1;
        }
        found
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.keyword("not") {
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(Token::Close)?;
            return Ok(inner);
        }
        let Token::Word(name) = self.next()? else {
            return Err(format!("expected a property name or a function at token {}", self.at));
        };
        if self.peek() == Some(&Token::Open) {
            return self.function(&name);
        }
        let property = self.property(name)?;
        if self.peek() == Some(&Token::Slash) {
            return self.any(property);
        }
        let op = match self.next()? {
            Token::Word(op) => match op.as_str() {
                "eq" => Comparison::Eq,
                "ne" => Comparison::Ne,
                "gt" => Comparison::Gt,
                "ge" => Comparison::Ge,
                "lt" => Comparison::Lt,
                "le" => Comparison::Le,
                other => return Err(format!("'{other}' is not a supported operator (eq, ne, gt, ge, lt, le)")),
            },
            other => return Err(format!("expected an operator after '{property}', found {}", describe(&other))),
        };
        let literal = self.literal()?;
        Ok(Filter::Compare { property, op, literal })
    }

    fn property(&self, name: String) -> Result<String, String> {
        if self.properties.contains(&name.as_str()) {
            Ok(name)
        } else {
            Err(format!(
                "'{name}' is not a property this collection can be filtered on ({})",
                self.properties.join(", ")
            ))
        }
    }

    fn function(&mut self, name: &str) -> Result<Filter, String> {
        if name != "startswith" {
            return Err(format!("the function '{name}' is not supported (only startswith)"));
        }
        self.expect(Token::Open)?;
        let Token::Word(property) = self.next()? else { return Err("startswith takes a property first".to_owned()) };
        let property = self.property(property)?;
        self.expect(Token::Comma)?;
        let Token::String(prefix) = self.next()? else { return Err("startswith takes a string second".to_owned()) };
        self.expect(Token::Close)?;
        Ok(Filter::StartsWith { property, prefix })
    }

    /// `property/any(t: t eq 'value')`, the slash already seen.
    fn any(&mut self, property: String) -> Result<Filter, String> {
        self.expect(Token::Slash)?;
        if !self.keyword("any") {
            return Err(format!("only '{property}/any(...)' is supported after '/'"));
        }
        self.expect(Token::Open)?;
        let Token::Word(variable) = self.next()? else { return Err("any takes a variable name".to_owned()) };
        self.expect(Token::Colon)?;
        match self.next()? {
            Token::Word(word) if word == variable => {}
            other => return Err(format!("any(...) compares its variable '{variable}', not {}", describe(&other))),
        }
        if !self.keyword("eq") {
            return Err("any(...) supports only 'eq'".to_owned());
        }
        let Token::String(value) = self.next()? else { return Err("any(...) compares with a string".to_owned()) };
        self.expect(Token::Close)?;
        Ok(Filter::AnyEq { property, value })
    }

    fn literal(&mut self) -> Result<Literal, String> {
        match self.next()? {
            Token::String(value) => Ok(Literal::String(value)),
            Token::Word(word) => match word.as_str() {
                "true" => Ok(Literal::Bool(true)),
                "false" => Ok(Literal::Bool(false)),
                "null" => Ok(Literal::Null),
                _ if looks_like_date_time(&word) => DateTime::parse_from_rfc3339(&word)
                    .map(|time| Literal::DateTime(time.with_timezone(&Utc)))
                    .map_err(|err| format!("'{word}' is not an ISO 8601 date-time ({err})")),
                _ => word
                    .parse::<f64>()
                    .map(Literal::Number)
                    .map_err(|_| format!("'{word}' is not a value (strings are in single quotes)")),
            },
            other => Err(format!("expected a value, found {}", describe(&other))),
        }
    }
}

impl Filter {
    /// Whether `entity` (a JSON object) passes.
    pub(crate) fn matches(&self, entity: &Value) -> bool {
        match self {
            Filter::Or(left, right) => left.matches(entity) || right.matches(entity),
            Filter::And(left, right) => left.matches(entity) && right.matches(entity),
            Filter::Not(inner) => !inner.matches(entity),
            Filter::Compare { property, op, literal } => compare(&entity[property.as_str()], *op, literal),
            Filter::StartsWith { property, prefix } => entity[property.as_str()]
                .as_str()
                .is_some_and(|text| text.to_lowercase().starts_with(&prefix.to_lowercase())),
            Filter::AnyEq { property, value } => entity[property.as_str()].as_array().is_some_and(|items| {
                items.iter().any(|item| item.as_str().is_some_and(|s| s.eq_ignore_ascii_case(value)))
            }),
        }
    }
}

fn compare(actual: &Value, op: Comparison, literal: &Literal) -> bool {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match (actual, literal) {
        (Value::Null, Literal::Null) => Some(Ordering::Equal),
        (_, Literal::Null) | (Value::Null, _) => None,
        (Value::String(text), Literal::DateTime(time)) => {
            DateTime::parse_from_rfc3339(text).ok().map(|actual| actual.with_timezone(&Utc).cmp(time))
        }
        (Value::String(text), Literal::String(value)) => Some(text.to_lowercase().cmp(&value.to_lowercase())),
        (Value::Number(number), Literal::Number(value)) => number.as_f64().and_then(|n| n.partial_cmp(value)),
        (Value::Bool(flag), Literal::Bool(value)) => Some(flag.cmp(value)),
        _ => None,
    };
    match (op, ordering) {
        (Comparison::Ne, ordering) => ordering != Some(Ordering::Equal),
        (_, None) => false,
        (Comparison::Eq, Some(ordering)) => ordering == Ordering::Equal,
        (Comparison::Gt, Some(ordering)) => ordering == Ordering::Greater,
        (Comparison::Ge, Some(ordering)) => ordering != Ordering::Less,
        (Comparison::Lt, Some(ordering)) => ordering == Ordering::Less,
        (Comparison::Le, Some(ordering)) => ordering != Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROPERTIES: &[&str] = &["computerDnsName", "healthStatus", "machineTags", "lastSeen", "riskScore"];

    fn device() -> Value {
        json!({
            "computerDnsName": "Desk-O'Brien.contoso.com",
            "healthStatus": "Active",
            "machineTags": ["Incident4711", "VIP"],
            "lastSeen": "2024-05-01T10:00:00.1234567Z",
            "riskScore": "High",
        })
    }

    fn passes(filter: &str) -> bool {
        parse(filter, PROPERTIES).unwrap_or_else(|err| panic!("{filter}: {err}")).matches(&device())
    }

    #[test]
    fn comparisons_logic_and_functions() {
        assert!(passes("computerDnsName eq 'desk-o''brien.contoso.com'"));
        assert!(!passes("computerDnsName ne 'DESK-O''BRIEN.CONTOSO.COM'"));
        assert!(passes("healthStatus eq 'Inactive' or (startswith(computerDnsName, 'desk-') and riskScore eq 'High')"));
        assert!(!passes("healthStatus eq 'Inactive' or startswith(computerDnsName, 'srv-')"));
        assert!(passes("not (healthStatus eq 'Inactive')"));
        assert!(passes("machineTags/any(tag: tag eq 'incident4711')"));
        assert!(!passes("machineTags/any(t: t eq 'Other')"));
        assert!(passes("lastSeen ge 2024-05-01T09:59:59Z and lastSeen le 2024-05-01T10:00:01Z"));
        assert!(!passes("lastSeen gt 2024-05-01T10:00:01+00:00"));
        // `and` binds tighter than `or`.
        assert!(passes("healthStatus eq 'Active' or healthStatus eq 'x' and riskScore eq 'y'"));
    }

    #[test]
    fn a_quote_in_a_value_stays_in_the_value() {
        // A name crafted to break out of its literal is one string, compared as a whole.
        let filter = parse("computerDnsName eq 'x'' or healthStatus eq ''Active'", PROPERTIES).unwrap();
        assert!(
            matches!(&filter, Filter::Compare { literal: Literal::String(s), .. } if s == "x' or healthStatus eq 'Active")
        );
        assert!(!filter.matches(&device()));
    }

    #[test]
    fn unsupported_expressions_are_errors() {
        for bad in [
            "",
            "computerDnsName",
            "computerDnsName eq",
            "computerDnsName eq 'unterminated",
            "computerDnsName eq unquoted",
            "computerDnsName like 'x'",
            "osVersion eq 'x'",
            "contains(computerDnsName, 'x')",
            "(healthStatus eq 'Active'",
            "healthStatus eq 'Active')",
            "machineTags/all(t: t eq 'x')",
            "machineTags/any(t: u eq 'x')",
            "healthStatus eq 'Active' and",
            "lastSeen ge 2024-13-45T00:00:00Z",
            "healthStatus eq 'a' ; drop",
        ] {
            assert!(parse(bad, PROPERTIES).is_err(), "{bad:?} parsed");
        }
    }
}
