//! `n`/`last` pagination shared by the tags list and the catalog: a page
//! holds names sorted lexically after `last`, at most `n` of them, and says
//! where the next page starts (the `Link: <…>; rel="next"` header).

/// Catalog pages are capped so one request stays cheap.
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    /// `Some(n)` when more items follow this page.
    more_with: Option<usize>,
}

/// The page size a request's `n` asks for: `MAX_PAGE` when absent or
/// larger (a `Link` then leads on), an error a person can read when `n`
/// is not a whole number.
pub fn page_size(n: Option<&str>) -> Result<usize, String> {
    match n.map(str::parse::<usize>) {
        None => Ok(MAX_PAGE),
        Some(Ok(n)) => Ok(n.min(MAX_PAGE)),
        Some(Err(_)) => Err("n must be a whole number".into()),
    }
}

impl Page {
    /// A page read by a store that already started after `last` and knows
    /// whether more follow: `more_with` is the `n` of the next page, if any.
    pub fn known(items: Vec<String>, more_with: Option<usize>) -> Page {
        Page { items, more_with }
    }

    /// A page of `sorted` (already in lexical order): those after `last`, at
    /// most `n`. `sorted` may hold one more than `n` to show more follow.
    pub fn of(mut sorted: Vec<String>, last: Option<&str>, n: Option<usize>) -> Page {
        if let Some(last) = last {
            sorted.retain(|item| item.as_str() > last);
        }
        let more_with = n.filter(|n| sorted.len() > *n);
        if let Some(n) = n {
            sorted.truncate(n);
        }
        Page {
            items: sorted,
            more_with,
        }
    }

    /// The `Link` header value for the next page of `path`, if there is one.
    pub fn next_link(&self, path: &str) -> Option<String> {
        let n = self.more_with?;
        let last = self.items.last()?;
        Some(format!(
            "<{path}?n={n}&last={}>; rel=\"next\"",
            url::form_urlencoded::byte_serialize(last.as_bytes()).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pages_follow_last_and_stop_at_n() {
        let all = names(&["a", "b", "c", "d"]);
        let first = Page::of(all.clone(), None, Some(2));
        assert_eq!(first.items, names(&["a", "b"]));
        assert_eq!(
            first.next_link("/v2/_catalog").as_deref(),
            Some("</v2/_catalog?n=2&last=b>; rel=\"next\"")
        );
        let second = Page::of(all.clone(), Some("b"), Some(2));
        assert_eq!(second.items, names(&["c", "d"]));
        assert_eq!(second.next_link("/v2/_catalog"), None);
        assert_eq!(Page::of(all.clone(), None, None).items.len(), 4);
        assert_eq!(Page::of(all, Some("d"), None).items, Vec::<String>::new());
    }

    #[test]
    fn page_sizes_are_capped_and_checked() {
        assert_eq!(page_size(None), Ok(MAX_PAGE));
        assert_eq!(page_size(Some("5")), Ok(5));
        assert_eq!(page_size(Some("999999")), Ok(MAX_PAGE));
        assert!(page_size(Some("-1")).is_err());
        assert!(page_size(Some("many")).is_err());
    }

    #[test]
    fn names_in_links_are_escaped() {
        let page = Page::of(names(&["alice.test/a b", "z"]), None, Some(1));
        assert_eq!(
            page.next_link("/v2/x/tags/list").as_deref(),
            Some("</v2/x/tags/list?n=1&last=alice.test%2Fa+b>; rel=\"next\"")
        );
    }
}
