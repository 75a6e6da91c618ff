//! The parts of a request URL the router and the objects read: host, path and query pairs.
//!
//! The runtime hands every request its URL already serialized by the WHATWG URL parser
//! (`scheme://host[:port]/path?query#fragment`, host lowercased, path and query percent-encoded),
//! so finding the parts is a matter of splitting it; parsing it again with the `url` crate would
//! link its IDNA and Unicode normalization code and tables into the Worker (157 KB of wasm, 69 KB
//! gzipped, `docs/size.md`) for nothing. Query pairs are decoded as `application/x-www-form-urlencoded`, like
//! `url::Url::query_pairs`.

use std::borrow::Cow;
use std::ops::Range;

/// A request URL split into its parts (see the module docs for what it expects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUrl {
    text: String,
    host: Range<usize>,
    path: Range<usize>,
    query: Option<Range<usize>>,
}

impl RequestUrl {
    /// Splits `text`, an absolute URL as the runtime serializes it. Never fails: a URL without
    /// `://` is taken as a path (and query) without a host.
    pub fn parse(text: impl Into<String>) -> Self {
        let text = text.into();
        // The fragment never reaches a server, but cut it off all the same.
        let end = text.find('#').unwrap_or(text.len());
        let (host, rest_start) = match text.get(..end).and_then(|head| head.find("://")) {
            Some(scheme_end) => {
                let authority_start = scheme_end + 3;
                let authority_end = text
                    .get(authority_start..end)
                    .and_then(|authority| authority.find(['/', '?']))
                    .map_or(end, |i| authority_start + i);
                let authority = text.get(authority_start..authority_end).unwrap_or_default();
                // Drop `user:password@`, then the port (an IPv6 host keeps its brackets).
                let host_start = authority.rfind('@').map_or(0, |at| at + 1);
                let host_part = authority.get(host_start..).unwrap_or_default();
                let host_len = if host_part.starts_with('[') {
                    host_part.find(']').map_or(host_part.len(), |close| close + 1)
                } else {
                    host_part.find(':').unwrap_or(host_part.len())
                };
                let start = authority_start + host_start;
                (start..start + host_len, authority_end)
            }
            None => (0..0, 0),
        };
        let query_mark = text.get(rest_start..end).and_then(|rest| rest.find('?')).map(|i| rest_start + i);
        let path = rest_start..query_mark.unwrap_or(end);
        let query = query_mark.map(|mark| mark + 1..end);
        Self { text, host, path, query }
    }

    /// The whole URL as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The host (an IPv6 address in brackets, without the port), if the URL has one.
    pub fn host_str(&self) -> Option<&str> {
        self.text.get(self.host.clone()).filter(|host| !host.is_empty())
    }

    /// The path, percent-encoded as received; `/` when the URL has none.
    pub fn path(&self) -> &str {
        match self.text.get(self.path.clone()) {
            Some(path) if !path.is_empty() => path,
            _ => "/",
        }
    }

    /// The query without its `?`, if the URL has one.
    pub fn query(&self) -> Option<&str> {
        self.query.clone().and_then(|range| self.text.get(range))
    }

    /// The query's name/value pairs, percent- and `+`-decoded, in order.
    pub fn query_pairs(&self) -> form_urlencoded::Parse<'_> {
        form_urlencoded::parse(self.query().unwrap_or_default().as_bytes())
    }

    /// The decoded value of the first query pair named `name`.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_urls_the_runtime_serializes() {
        let url =
            RequestUrl::parse("http://127.0.0.1:8787/v1/t/acme/rooms/lobby/ws?format=json&resume_from=3");
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        assert_eq!(url.path(), "/v1/t/acme/rooms/lobby/ws");
        assert_eq!(url.query(), Some("format=json&resume_from=3"));
        assert_eq!(url.query_param("resume_from").as_deref(), Some("3"));
        assert_eq!(url.query_param("missing"), None);

        for (text, host, path, query) in [
            ("https://example.com", Some("example.com"), "/", None),
            ("https://example.com?a=1", Some("example.com"), "/", Some("a=1")),
            ("https://example.com/#frag?x", Some("example.com"), "/", None),
            ("https://example.com/a%3F%23b?c#d", Some("example.com"), "/a%3F%23b", Some("c")),
            ("https://user:pw@example.com:443/x", Some("example.com"), "/x", None),
            ("http://[::1]:8787/healthz?", Some("[::1]"), "/healthz", Some("")),
            ("http://localhost/a?b?c", Some("localhost"), "/a", Some("b?c")),
            ("/just/a/path?x=1", None, "/just/a/path", Some("x=1")),
            ("", None, "/", None),
        ] {
            let url = RequestUrl::parse(text);
            assert_eq!((url.host_str(), url.path(), url.query()), (host, path, query), "{text}");
            assert_eq!(url.as_str(), text);
        }
    }

    #[test]
    fn query_pairs_decode_like_form_urlencoded() {
        let url = RequestUrl::parse("https://h/p?token=a%2Bb+c&admin_key=%F0%9F%94%91&flag&=v&x=%zz");
        let pairs: Vec<(String, String)> =
            url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let expected = [("token", "a+b c"), ("admin_key", "🔑"), ("flag", ""), ("", "v"), ("x", "%zz")];
        assert_eq!(pairs, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
    }

    #[test]
    fn odd_input_never_panics() {
        for text in ["://", "a://", "x://[", "x://[::1", "x://@", "x://a@b@c:1", "é://ü/ä?ö#", "?#", "#?"]
        {
            let url = RequestUrl::parse(text);
            let _ = (url.host_str(), url.path(), url.query(), url.query_pairs().count());
        }
    }
}
