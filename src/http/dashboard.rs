//! The officials' dashboard, served from the binary at `/`.
//!
//! One self-contained page (`web/index.html`: inline CSS and JavaScript, no
//! CDN, no external fonts, no build step), compiled in so the binary needs no
//! asset directory. It reads everything through the public `/v1` API with the
//! token the official pastes, like any other client; it must not depend on
//! any private endpoint. Tested in a real browser by `tests/browser/run.sh`.

use std::sync::LazyLock;

/// The dashboard page, `text/html; charset=utf-8`.
pub const INDEX_HTML: &str = include_str!("../../web/index.html");

/// The page's `Content-Security-Policy` header: its inline scripts only by
/// their SHA-256 (so an injected `<script>` or `on…=` attribute never runs),
/// inline styles (the page sets `style` attributes), API calls to this
/// origin only, nothing from any other origin, never framed.
pub fn csp() -> &'static str {
    static CSP: LazyLock<String> = LazyLock::new(|| {
        let hashes: Vec<String> = inline_scripts(INDEX_HTML).map(script_hash).collect();
        format!(
            "default-src 'none'; script-src {}; style-src 'unsafe-inline'; connect-src 'self'; \
             img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            if hashes.is_empty() {
                "'none'".to_owned()
            } else {
                hashes.join(" ")
            }
        )
    });
    &CSP
}

/// A CSP hash source for a script's text: `'sha256-BASE64'`.
fn script_hash(text: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The text of each inline `<script>` element (those with no attributes).
fn inline_scripts(html: &str) -> impl Iterator<Item = &str> {
    html.split("<script>")
        .skip(1)
        .filter_map(|rest| rest.find("</script>").map(|end| &rest[..end]))
}

#[cfg(test)]
mod tests {
    use super::{INDEX_HTML, csp, inline_scripts, script_hash};

    #[test]
    fn every_script_runs_only_by_its_hash() {
        // Any other kind of script (with `src` or attributes) would be
        // refused by the policy, so the page holds none.
        assert_eq!(
            INDEX_HTML.matches("<script").count(),
            inline_scripts(INDEX_HTML).count(),
            "a <script> with attributes"
        );
        assert!(inline_scripts(INDEX_HTML).count() >= 1);
        let policy = csp();
        assert_eq!(
            policy.matches("'sha256-").count(),
            inline_scripts(INDEX_HTML).count()
        );
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        let script_src = policy
            .split(';')
            .find(|d| d.trim().starts_with("script-src"))
            .unwrap();
        assert!(!script_src.contains("unsafe"), "{policy}");
        assert!(!policy.contains("http"), "{policy}");
        // No inline event handler attribute, which no hash can allow.
        for attr in [
            " onclick=",
            " onload=",
            " onchange=",
            " oninput=",
            " onsubmit=",
        ] {
            assert!(!INDEX_HTML.contains(attr), "the page uses {attr}");
        }
    }

    #[test]
    fn the_script_hash_is_sha256_base64_of_the_text() {
        let html = "<p>x</p><script>alert(1)</script><script>\nlet a;\n</script>";
        let got: Vec<&str> = inline_scripts(html).collect();
        assert_eq!(got, ["alert(1)", "\nlet a;\n"]);
        // Computed apart: base64(sha256(b"alert(1)")) in Python.
        assert_eq!(
            script_hash("alert(1)"),
            "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"
        );
    }

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
        // Every fetch goes through `api()`, with paths under /v1/ from docs/api.md.
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
