//! The officials' dashboard, served from the binary at `/`.
//!
//! One self-contained page (`web/index.html`: inline CSS and JavaScript, no
//! CDN, no external fonts, no build step), compiled in so the binary needs no
//! asset directory. It reads everything through the public `/v1` API with the
//! token the official pastes, like any other client; it must not depend on
//! any private endpoint. Tested in a real browser by `tests/browser/run.sh`.

/// The dashboard page, `text/html; charset=utf-8`.
pub const INDEX_HTML: &str = include_str!("../../web/index.html");

#[cfg(test)]
mod tests {
    use super::INDEX_HTML;

    #[test]
    fn dashboard_loads_nothing_from_other_hosts() {
        for needle in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "@import",
            "url(http",
        ] {
            assert!(
                !INDEX_HTML.contains(needle),
                "the dashboard references {needle}"
            );
        }
    }

    #[test]
    fn dashboard_never_writes_html_from_strings() {
        // Register data (names, areas) is untrusted: the page builds DOM nodes
        // and sets text, never markup. The one mention is the comment saying so.
        assert_eq!(
            INDEX_HTML.matches("innerHTML").count(),
            2,
            "innerHTML beyond the header comment"
        );
        for needle in ["outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
            assert!(!INDEX_HTML.contains(needle), "the dashboard uses {needle}");
        }
    }

    #[test]
    fn dashboard_calls_only_the_public_api() {
        // Every fetch goes through `api()`, with paths under /v1/ from API.md.
        assert_eq!(
            INDEX_HTML.matches("fetch(").count(),
            1,
            "one fetch call, inside api()"
        );
        for path in ["'/v1/rounds'", "/v1/rounds/${enc(id)}/${what}"] {
            assert!(INDEX_HTML.contains(path), "expected {path}");
        }
    }
}
