//! Keeping secrets out of text that people read.
//!
//! Messages are written not to contain secrets in the first place. This module is the second
//! line of defence, applied to every error message and log line at the boundary: it removes
//! the values of secret query parameters (`token=`, `sig=`, ...), bearer tokens, anything shaped
//! like a JWT, and the exact secret values the client was configured with.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// A secret (client secret, access token, client assertion, identity header). Its `Debug`
/// output never shows the value, so it cannot leak through a `{:?}` by accident. Its copies share
/// one allocation, so a settings snapshot per call copies no secret, and that memory is zeroed
/// (`zeroize`) when the last copy is dropped.
#[derive(Clone)]
pub(crate) struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Self(Arc::new(Zeroizing::new(value.into())))
    }

    pub(crate) fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

pub(crate) const REDACTED: &str = "REDACTED";

/// The longest message or log line handed to the caller, in characters (before escaping).
pub(crate) const MAX_MESSAGE_CHARS: usize = 4096;
/// The most characters of one piece of the service's text (an error message, a code, a status)
/// put into a message.
pub(crate) const SERVICE_TEXT_CHARS: usize = 300;

/// `text` made safe to print, for text that came from the service and for every message and log
/// line at the boundary: control characters (ESC, BEL, CR, LF, NUL, the C1 range) and the
/// bidirectional formatting characters that reorder what a terminal shows are escaped as
/// `\u001b`, so a server cannot inject terminal escapes or forge log lines; at most `max_chars`
/// characters are kept, then `…`.
pub(crate) fn printable(text: &str, max_chars: usize) -> String {
    let is_unsafe = |c: char| {
        c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    let mut out = String::with_capacity(text.len().min(max_chars));
    for (kept, c) in text.chars().enumerate() {
        if kept == max_chars {
            out.push('…');
            break;
        }
        if is_unsafe(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A message or log line as the caller gets it: without secrets (see `scrub`), printable.
pub(crate) fn for_caller(text: &str, known_secrets: &[&str]) -> String {
    printable(&scrub(text, known_secrets), MAX_MESSAGE_CHARS)
}

/// Query parameters whose values are credentials: SAS tokens and signatures on download links,
/// and the OAuth form fields.
const SECRET_PARAMETERS: &[&str] = &["token", "sig", "client_secret", "client_assertion", "access_token", "code"];

/// Returns `text` with every secret it can recognise replaced by `REDACTED`.
/// `known_secrets` are exact values to remove wherever they appear (empty ones are ignored).
pub(crate) fn scrub(text: &str, known_secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in known_secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, REDACTED);
    }
    let out = scrub_parameters(&out);
    let out = scrub_bearer(&out);
    scrub_jwts(&out)
}

fn is_value_end(c: char) -> bool {
    c.is_whitespace() || matches!(c, '&' | '"' | '\'' | ')' | '>' | ',' | ';' | '#')
}

/// `...?token=abc&x=1` -> `...?token=REDACTED&x=1`, for each name in `SECRET_PARAMETERS`,
/// where the name starts a parameter (after `?`, `&`, a space or a quote, or at the start).
fn scrub_parameters(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        let starts_parameter = i == 0 || matches!(text.as_bytes()[i - 1], b'?' | b'&' | b' ' | b'"' | b'\'' | b'(');
        let rest = &lower.as_bytes()[i..];
        let name = SECRET_PARAMETERS
            .iter()
            .filter(|_| starts_parameter)
            .find(|name| rest.starts_with(name.as_bytes()) && rest.get(name.len()) == Some(&b'='));
        if let Some(name) = name {
            let value_start = i + name.len() + 1;
            let value_len = text[value_start..].find(is_value_end).unwrap_or(text.len() - value_start);
            if value_len > 0 {
                out.push_str(&text[copied..value_start]);
                out.push_str(REDACTED);
                copied = value_start + value_len;
            }
            i = value_start + value_len;
        } else {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// `Bearer abc.def` -> `Bearer REDACTED` (any case of "bearer").
fn scrub_bearer(text: &str) -> String {
    const WORD: &str = "bearer ";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search_from = 0;
    while let Some(found) = lower[search_from..].find(WORD) {
        let value_start = search_from + found + WORD.len();
        let value_len = text[value_start..].find(is_value_end).unwrap_or(text.len() - value_start);
        if value_len > 0 && &text[value_start..value_start + value_len] != REDACTED {
            out.push_str(&text[copied..value_start]);
            out.push_str(REDACTED);
            copied = value_start + value_len;
        }
        search_from = value_start + value_len;
    }
    out.push_str(&text[copied..]);
    out
}

/// Anything shaped like a JWT (`eyJ<base64url>.<base64url>...`) -> `REDACTED`.
fn scrub_jwts(text: &str) -> String {
    let is_jwt_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("eyJ") {
        let candidate_len = rest[found..].find(|c| !is_jwt_char(c)).unwrap_or(rest.len() - found);
        let candidate = &rest[found..found + candidate_len];
        out.push_str(&rest[..found]);
        if candidate.matches('.').count() >= 2 {
            out.push_str(REDACTED);
        } else {
            out.push_str(candidate);
        }
        rest = &rest[found + candidate_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_sas_token_and_signature_but_keeps_the_rest_of_the_link() {
        let text = "GET https://host/safedownload/x.zip?token=abc123&sig=zz%2F&se=2026 failed";
        assert_eq!(scrub(text, &[]), "GET https://host/safedownload/x.zip?token=REDACTED&sig=REDACTED&se=2026 failed");
    }

    #[test]
    fn parameter_names_inside_other_words_are_left_alone() {
        assert_eq!(scrub("mytoken=1 a_sig=2", &[]), "mytoken=1 a_sig=2");
    }

    #[test]
    fn removes_bearer_tokens_jwts_and_known_values() {
        let text = "Authorization: Bearer abc.def and eyJhbGciOi.eyJzdWIi.c2ln and s3cr3t-value";
        assert_eq!(scrub(text, &["s3cr3t-value", ""]), "Authorization: Bearer REDACTED and REDACTED and REDACTED");
    }

    #[test]
    fn form_bodies_lose_their_credentials() {
        let text = "client_id=app&client_secret=hunter22&client_assertion=eyJa.eyJb.c";
        assert_eq!(scrub(text, &[]), "client_id=app&client_secret=REDACTED&client_assertion=REDACTED");
    }

    #[test]
    fn text_without_secrets_is_unchanged_including_non_ascii() {
        let text = "Zugriff verweigert für Aktion «42»: HTTP 403";
        assert_eq!(scrub(text, &[]), text);
    }

    #[test]
    fn control_and_bidi_characters_are_escaped_and_long_text_cut() {
        assert_eq!(
            printable("a\u{1b}[31mb\u{7}\r\n\0\u{85}\u{202e}c", 100),
            "a\\u001b[31mb\\u0007\\u000d\\u000a\\u0000\\u0085\\u202ec"
        );
        assert_eq!(printable("Zugriff für «42»", 100), "Zugriff für «42»");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("abc", 3), "abc");
        assert_eq!(printable(&printable("\u{1b}", 10), 10), "\\u001b", "escaping twice changes nothing more");
    }

    #[test]
    fn copies_of_a_secret_share_one_allocation() {
        let secret = Secret::new("hunter22");
        let copy = secret.clone();
        assert_eq!(copy.expose().as_ptr(), secret.expose().as_ptr());
        assert_eq!(copy, Secret::new("hunter22"));
    }

    #[test]
    fn secret_debug_output_hides_the_value() {
        assert_eq!(format!("{:?}", Secret::new("hunter22")), "Secret(REDACTED)");
    }
}
