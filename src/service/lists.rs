//! Lists of the API's entities (`GET /api/machines`, `GET /api/machineactions`): an OData
//! `$filter` passed through, every page followed by its `@odata.nextLink`, an optional cap.

use std::collections::HashSet;

use serde::Deserialize;
use url::Url;

use super::{Api, Operation, Request};
use crate::error::{Error, Result};
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

/// Every entity of `collection` that passes `filter` (verbatim as `$filter`), in the service's
/// order, at most `max_items` of them (0: all). Each page is one request through the rate
/// limiter; `@odata.nextLink` is followed only to the API host (its scheme, host and port), and a
/// link that repeats is an error rather than a loop.
pub(crate) async fn list(
    api: Api<'_>,
    collection: &Collection,
    filter: Option<&str>,
    max_items: u32,
) -> Result<Vec<serde_json::Value>> {
    let what = match filter {
        Some(filter) => format!("listing the {} that match {filter}", collection.entities),
        None => format!("listing the {}", collection.entities),
    };
    if filter.is_some_and(|filter| filter.trim().is_empty()) {
        return Err(Error::invalid_argument(format!("{what}: the filter is empty (pass NULL for no filter)")));
    }
    let page_size = if max_items == 0 { MAX_PAGE } else { max_items.min(MAX_PAGE) }.to_string();
    let mut query = vec![("$top", page_size.as_str())];
    if let Some(filter) = filter {
        query.insert(0, ("$filter", filter));
    }
    let root = api.session.settings.api_root();
    let mut next = Some(api.url(&[collection.segment], &query)?);
    let mut seen = HashSet::new();
    let mut entities = Vec::new();
    let mut pages = 0u32;
    while let Some(url) = next.take() {
        pages += 1;
        let page_what = format!("{what} (page {pages})");
        let response = api.send(Request::get(collection.endpoint, url.clone(), &page_what)).await?;
        #[derive(Deserialize)]
        struct Page {
            value: Vec<serde_json::Value>,
            #[serde(rename = "@odata.nextLink")]
            next_link: Option<String>,
        }
        let page: Page = response.success(&page_what)?.json(&page_what)?;
        entities.extend(page.value);
        seen.insert(url);
        if max_items > 0 && entities.len() >= max_items as usize {
            entities.truncate(max_items as usize);
            break;
        }
        if let Some(link) = page.next_link {
            let link = same_host_link(&root, &link).map_err(|err| err.context(&page_what))?;
            if seen.contains(&link) {
                return Err(Error::protocol(format!("{page_what}: the next page's link repeats an earlier page's")));
            }
            next = Some(link);
        }
    }
    api.reporter.log(DefenderLogLevel::Info, format!("{what}: {} in {pages} page(s)", entities.len()));
    Ok(entities)
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
