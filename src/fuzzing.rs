//! Entry points for the fuzz targets in `fuzz/`: each hands the fuzzer's bytes to one parser of
//! what the service sends, as the library calls it, and checks what must hold whatever the input:
//! no panic, no overflow, and text that reaches the caller is printable; and, at the end, the one
//! internal the benchmark compares the C ABI against. Hidden and unstable: not part of the
//! library's API (which is the C ABI).

use std::time::Duration;

use reqwest::StatusCode;

use crate::config::{Settings, is_loopback};
use crate::error::{DefenderStatus, Error};
use crate::redact::for_caller;
use crate::retry::{Failure, Policy, Repeat, RetryPolicy};
use crate::service::{ApiResponse, Operation, machine_actions};

/// What the caller would be shown for `error` holds no character a terminal acts on.
fn assert_printable(error: &Error) {
    let shown = for_caller(error.message(), &[]);
    assert!(!shown.chars().any(char::is_control), "not printable: {shown:?}");
}

/// A MachineAction (`GET /api/machineactions/{id}`, and each item of a list): what the caller
/// gets back is the answer's own text.
pub fn machine_action(data: &[u8]) {
    let response = ApiResponse::new(StatusCode::OK, data.to_vec(), Operation::MachineAction);
    match response.entity::<machine_actions::ActionFields>("fuzzing") {
        Ok(entity) => match machine_actions::MachineAction::new(entity, "fuzzing") {
            Ok(action) => {
                let text = action.into_json();
                assert_eq!(text.trim(), text, "{text:?}");
                assert!(std::str::from_utf8(data).is_ok_and(|data| data.contains(&text)), "{text:?}");
            }
            Err(error) => assert_printable(&error),
        },
        Err(error) => assert_printable(&error),
    }
}

/// A page of a list (`{"value": [...], "@odata.nextLink": "..."}`), with `$top` taken from the
/// first byte: never more items than that are kept, each is an item's own text, and together they
/// read back as the JSON array the caller gets.
pub fn list_page(data: &[u8]) {
    let Some((&top, body)) = data.split_first() else { return };
    let top = usize::from(top % 8);
    let Ok(page) = crate::service::lists::parse_page::<serde::de::IgnoredAny>(body, top) else { return };
    assert!(page.items.len() <= top, "{} items kept, {top} asked for", page.items.len());
    let array = crate::service::entity::json_array(&page.items);
    let read_back: Vec<&serde_json::value::RawValue> = serde_json::from_str(&array).expect("the items make an array");
    assert_eq!(read_back.len(), page.items.len());
    for (read, item) in read_back.iter().zip(&page.items) {
        assert_eq!(read.get(), item.json.get());
    }
}

/// getPackageUri's answer: any link that comes out is absolute `https` (or `http` to loopback)
/// without user information.
pub fn package_uri_answer(data: &[u8]) {
    match machine_actions::link_from_answer(data) {
        Ok(link) => {
            assert!(link.scheme() == "https" || (link.scheme() == "http" && is_loopback(&link)), "{link}");
            assert!(link.username().is_empty() && link.password().is_none(), "{link}");
        }
        Err(error) => assert_printable(&error),
    }
}

/// The token endpoint's answer, as a token and as an error.
pub fn token_answer(data: &[u8]) {
    if let Err(error) = crate::auth::entra_token_from_answer(data) {
        assert_printable(&error);
    }
    assert_printable(&crate::auth::entra_token_error(StatusCode::BAD_REQUEST, data));
}

/// A managed identity endpoint's answer, as a token and as an error.
pub fn managed_identity_answer(data: &[u8]) {
    if let Err(error) = crate::auth::identity_token_from_answer(data) {
        assert_printable(&error);
    }
    assert_printable(&crate::auth::identity_endpoint_error(StatusCode::BAD_REQUEST, data));
}

/// The API's error body, as it becomes the call's message.
pub fn service_error(data: &[u8]) {
    let error =
        ApiResponse::new(StatusCode::BAD_REQUEST, data.to_vec(), Operation::GetPackageUri).into_error("fuzzing");
    assert_printable(&error);
}

/// A `Retry-After` header, and the retry policy's verdict on it at every clock scale.
pub fn retry_after(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some(wait) = crate::retry::parse_retry_after(text) else { return };
    for clock_scale in [1.0, 1e-6, 1e6] {
        let settings = Settings { clock_scale, timeout: Some(Duration::from_secs(30)), ..Settings::default() };
        for status in [StatusCode::TOO_MANY_REQUESTS, StatusCode::SERVICE_UNAVAILABLE] {
            let mut policy = RetryPolicy::new(&settings, Repeat::Safe);
            let _ = policy.verdict(Failure::Status { status, retry_after: Some(wait) });
        }
    }
}

/// A `Content-Range` header: a range that is read is whole and within its total.
pub fn content_range(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(range) = crate::download::parse_content_range(text) {
        assert!(range.first <= range.last && range.last < range.total, "{range:?}");
    }
}

/// The streaming ZIP check of a package, fed the input whole and in pieces of a few sizes (the
/// first byte chooses one): the same verdict however the bytes arrive, naming the same entry, and
/// its message printable. Only the reason after the entry may differ, for deflated data that is
/// both longer than its header says and corrupt further on: which of the two inflate meets first
/// depends on how much input it was given at a time.
pub fn zip_check(data: &[u8]) {
    use crate::download::zip_check::check_bytes;
    let Some((&choice, archive)) = data.split_first() else { return };
    let whole = check_bytes(archive, archive.len());
    let pieces = check_bytes(archive, [1, 7, 64, 4096][usize::from(choice) % 4]);
    assert_eq!(whole.is_ok(), pieces.is_ok(), "{whole:?} / {pieces:?}");
    if let (Err(whole), Err(pieces)) = (&whole, &pieces) {
        assert_eq!(whole.status(), pieces.status());
        let (what, _) = whole.message().rsplit_once(": ").unwrap_or((whole.message(), ""));
        let (also, _) = pieces.message().rsplit_once(": ").unwrap_or((pieces.message(), ""));
        assert_eq!(what, also, "{} / {}", whole.message(), pieces.message());
        // Printable: an entry's name is escaped (`for_caller` would also redact what looks like a
        // secret in it, such as "bearer x", when the message reaches the caller).
        for message in [whole.message(), pieces.message()] {
            assert!(!message.chars().any(char::is_control), "not printable: {message:?}");
        }
    }
}

/// The result the batch builds for a failed item, from an action id and a message of the
/// service's (split at the first NUL): valid JSON that reads back as it was built, printable.
pub fn batch_result(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (action_id, message) = text.split_once('\0').unwrap_or((&text, ""));
    let message = for_caller(message, &[]);
    let result =
        crate::download::batch::ItemResult::failed(action_id, DefenderStatus::Http, message.clone(), Duration::MAX);
    let read_back: serde_json::Value =
        serde_json::from_str(&crate::download::to_json(&result)).expect("the batch builds JSON");
    let expected = serde_json::json!({
        "status": "HTTP",
        "code": DefenderStatus::Http as i32,
        "action_id": action_id,
        "message": message,
        "elapsed_ms": u64::MAX,
    });
    assert_eq!(read_back, expected);
    assert!(!read_back["message"].as_str().unwrap_or_default().chars().any(char::is_control));
}

/// The benchmark's comparison for the cost of a call (`bench/src/calls.rs`): the HTTP client the
/// library makes its API calls with, and the per-request timeout it sets, with default options.
pub fn api_http_client() -> std::result::Result<(reqwest::Client, Option<Duration>), String> {
    let settings = Settings::default();
    let clients = crate::http::build_clients(&settings).map_err(|err| err.to_string())?;
    Ok((clients.api, settings.timeout))
}
