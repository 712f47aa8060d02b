//! Lists of the API's entities (`GET /api/machines`, `GET /api/machineactions`): an OData
//! `$filter` passed through, every page followed by its `@odata.nextLink`, within limits.
//!
//! A server can make a list go on for ever: every page with a new next link, or far more items
//! than were asked for. So a list has limits, each passed with an error that names the option
//! that raises it: items (the caller's `max_items`, else `list_max_items`), pages
//! (`list_max_pages`), the call's time (`list_timeout_ms`), and a page's items (`$top`).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{DeserializeOwned, DeserializeSeed};
use serde_json::value::RawValue;
use url::Url;

use super::entity::{Entity, Items};
use super::{Api, Operation, Request, not_understood};
use crate::error::{DefenderStatus, Error, Result};
use crate::runtime::DefenderLogLevel;

/// The most entities the service sends in one page (`$top` above it is refused).
pub(crate) const MAX_PAGE: u32 = 10_000;

/// What to list: the collection's path segment and its entities' name in messages.
pub(crate) struct Collection {
    pub segment: &'static str,
    pub endpoint: Operation,
    /// "machines", "machine actions".
    pub entities: &'static str,
}

/// One page of a list, read: at most the items asked for (`more` when it held more), and the
/// link to the next page.
pub(crate) struct Page<T> {
    pub items: Vec<Entity<T>>,
    pub more: bool,
    pub next_link: Option<String>,
}

/// Reads a page (`{"value": [...], "@odata.nextLink": "..."}`), keeping at most `top` items.
pub(crate) fn parse_page<T: DeserializeOwned>(body: &[u8], top: usize) -> serde_json::Result<Page<T>> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        value: &'a RawValue,
        #[serde(rename = "@odata.nextLink", default)]
        next_link: Option<String>,
    }
    let envelope: Envelope = serde_json::from_slice(body)?;
    let read = Items::at_most(top).deserialize(&mut serde_json::Deserializer::from_str(envelope.value.get()))?;
    Ok(Page { items: read.entities, more: read.more, next_link: envelope.next_link })
}

/// How far a list got: what a limit's message reports.
struct Progress<T> {
    entities: Vec<Entity<T>>,
    pages: u32,
}

/// Every entity of `collection` that passes `filter` (verbatim as `$filter`), in the service's
/// order, each as it came with its fields `T`: at most `max_items` of them (0: all, up to the
/// option `list_max_items`). Each page is one request through the rate limiter;
/// `@odata.nextLink` is followed only to the API host (its scheme, host and port), and a link
/// that repeats is an error rather than a loop.
pub(crate) async fn list<T: DeserializeOwned>(
    api: Api<'_>,
    collection: &Collection,
    filter: Option<&str>,
    max_items: u32,
) -> Result<Vec<Entity<T>>> {
    let what = match filter {
        Some(filter) => format!("listing the {} that match {filter}", collection.entities),
        None => format!("listing the {}", collection.entities),
    };
    if filter.is_some_and(|filter| filter.trim().is_empty()) {
        return Err(Error::invalid_argument(format!("{what}: the filter is empty (pass NULL for no filter)")));
    }
    let settings = &api.session.settings;
    let mut progress = Progress { entities: Vec::new(), pages: 0 };
    let pages = follow_pages(api, collection, filter, max_items, &what, &mut progress);
    let outcome = match settings.list_timeout {
        Some(limit) => tokio::time::timeout(limit, pages).await.unwrap_or_else(|_| {
            Err(Error::new(
                DefenderStatus::Timeout,
                format!(
                    "{what}: not done after {} ({} page(s), {} {} so far); raise the option list_timeout_ms \
                     (0: no limit), or narrow the filter",
                    Seconds(limit),
                    progress.pages,
                    progress.entities.len(),
                    collection.entities
                ),
            ))
        }),
        None => pages.await,
    };
    outcome?;
    api.reporter
        .log(DefenderLogLevel::Info, format!("{what}: {} in {} page(s)", progress.entities.len(), progress.pages));
    Ok(progress.entities)
}

/// The pages of `list`, into `progress`, until the list ends or a limit is passed.
async fn follow_pages<T: DeserializeOwned>(
    api: Api<'_>,
    collection: &Collection,
    filter: Option<&str>,
    max_items: u32,
    what: &str,
    progress: &mut Progress<T>,
) -> Result<()> {
    let settings = &api.session.settings;
    let (limit, limit_is_the_callers) = match max_items {
        0 => (settings.list_max_items, false),
        wanted => (wanted as usize, true),
    };
    let top = limit.min(MAX_PAGE as usize);
    let page_size = top.to_string();
    let mut query = vec![("$top", page_size.as_str())];
    if let Some(filter) = filter {
        query.insert(0, ("$filter", filter));
    }
    let root = settings.api_root();
    let mut next = Some(api.url(&[collection.segment], &query)?);
    let mut seen = HashSet::new();
    let entities = collection.entities;
    while let Some(url) = next.take() {
        if progress.pages >= settings.list_max_pages {
            return Err(Error::protocol(format!(
                "{what}: more than {} pages (the option list_max_pages; {} {entities} so far); raise it, or narrow \
                 the filter",
                settings.list_max_pages,
                progress.entities.len()
            )));
        }
        progress.pages += 1;
        let page_what = format!("{what} (page {})", progress.pages);
        let response = api.send(Request::get(collection.endpoint, url.clone(), &page_what)).await?;
        let page: Page<T> =
            parse_page(&response.success(&page_what)?.body, top).map_err(|err| not_understood(&page_what, &err))?;
        if page.more {
            return Err(Error::protocol(format!(
                "{page_what}: the page holds more than the {top} {entities} asked for ($top)"
            )));
        }
        progress.entities.extend(page.items);
        seen.insert(url);
        let more_to_come = page.next_link.is_some();
        if progress.entities.len() >= limit {
            if limit_is_the_callers {
                progress.entities.truncate(limit);
                break;
            }
            if progress.entities.len() > limit || more_to_come {
                return Err(Error::protocol(format!(
                    "{what}: more than {limit} {entities} (the option list_max_items); raise it, pass max_items to \
                     take the first ones, or narrow the filter"
                )));
            }
        }
        if let Some(link) = page.next_link {
            let link = same_host_link(&root, &link).map_err(|err| err.context(&page_what))?;
            if seen.contains(&link) {
                return Err(Error::protocol(format!("{page_what}: the next page's link repeats an earlier page's")));
            }
            next = Some(link);
        }
    }
    Ok(())
}

/// A limit's duration as a person reads it: "90 s", "30 min".
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.as_secs_f64();
        if seconds >= 60.0 && seconds % 60.0 == 0.0 {
            write!(f, "{} min", seconds / 60.0)
        } else {
            write!(f, "{seconds:.1} s")
        }
    }
}

/// An `@odata.nextLink`, when it leads to the API host: the token is never sent elsewhere.
fn same_host_link(root: &Url, link: &str) -> Result<Url> {
    let url = Url::parse(link)
        .or_else(|_| root.join(link))
        .map_err(|err| Error::protocol(format!("the next page's link is not a URL ({err})")))?;
    if url.scheme() != root.scheme()
        || url.host_str() != root.host_str()
        || url.port_or_known_default() != root.port_or_known_default()
    {
        return Err(Error::protocol(format!(
            "the next page's link leads to {}://{}, not to the API host {}://{}; it was not followed",
            url.scheme(),
            url.host_str().unwrap_or("?"),
            root.scheme(),
            root.host_str().unwrap_or("?"),
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_followed_only_to_the_api_host() {
        let root = Url::parse("https://api.security.microsoft.com").unwrap();
        let same = same_host_link(&root, "https://api.security.microsoft.com/api/machines?$skip=10000").unwrap();
        assert_eq!(same.query(), Some("$skip=10000"));
        assert!(same_host_link(&root, "/api/machines?$skip=5").is_ok(), "a relative link stays on the host");
        for elsewhere in [
            "https://evil.example/api/machines?$skip=1",
            "http://api.security.microsoft.com/api/machines",
            "https://api.security.microsoft.com:8443/api/machines",
            "https://api.security.microsoft.com.evil.example/api/machines",
        ] {
            let err = same_host_link(&root, elsewhere).unwrap_err();
            assert_eq!(err.status(), crate::DefenderStatus::Protocol, "{elsewhere}");
        }
    }
}
