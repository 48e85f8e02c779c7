//! Repository descriptions (Markdown, from `io.atcr.repo.page` records) as
//! HTML a page can include: whatever the author wrote, it cannot run. Raw
//! HTML in the Markdown is shown as text, and links and images keep only
//! `http`, `https`, `mailto` and relative URLs.

use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag};

pub fn to_safe_html(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
}

/// The URL if its scheme is harmless (or it has none: relative), else empty.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let lower = url.trim_start().to_ascii_lowercase();
    let scheme = lower
        .split_once(':')
        .map(|(s, _)| s)
        .filter(|s| !s.contains(['/', '?', '#']));
    match scheme {
        None | Some("http" | "https" | "mailto") => url,
        Some(_) => CowStr::Borrowed(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders() {
        let html = to_safe_html(
            "# Web\n\nServes *pages*. See [docs](https://example.com/docs).\n\n```\nrun me\n```\n",
        );
        assert!(html.contains("<h1>Web</h1>"), "{html}");
        assert!(html.contains("<em>pages</em>"));
        assert!(html.contains(r#"<a href="https://example.com/docs">docs</a>"#));
        assert!(html.contains("<pre><code>run me\n</code></pre>"));
    }

    #[test]
    fn nothing_written_can_run() {
        let html = to_safe_html(
            "<script>alert(1)</script>\n\nhi <img src=x onerror=alert(2)> [x](javascript:alert(3)) \
             [y](JaVaScRiPt:alert(4)) ![z](data:text/html,boom) [ok](/relative) [m](mailto:a@b.c)",
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.to_ascii_lowercase().contains("javascript:"), "{html}");
        assert!(!html.contains("data:text"), "{html}");
        assert!(html.contains(r#"href="/relative""#));
        assert!(html.contains(r#"href="mailto:a@b.c""#));
    }
}
