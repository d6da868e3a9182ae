//! `WWW-Authenticate` challenges (RFC 7235) as registries send them: `Bearer realm="...",service="...",
//! scope="..."` (the distribution token protocol) or `Basic realm="..."`.

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Get a token from `realm`, for `service` and the scope of the request.
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
    /// Send the credentials with every request.
    Basic,
}

/// The first challenge burrow can answer (Bearer preferred), from every `WWW-Authenticate` header value.
pub fn parse<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut basic = false;
    for h in headers {
        let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let p = params(rest);
            if let Some(realm) = p.get("realm").filter(|r| !r.is_empty()) {
                return Some(Challenge::Bearer {
                    realm: realm.clone(),
                    service: p.get("service").cloned(),
                    scope: p.get("scope").cloned(),
                });
            }
        } else if scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        }
    }
    basic.then_some(Challenge::Basic)
}

/// `k=v, k="v, with \"quotes\""` → map (keys lowercased).
fn params(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_ascii_lowercase();
        if key.is_empty() {
            return out;
        }
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        out.insert(key, value);
    }
}

/// The token endpoint's answer (`token`, or OAuth2's `access_token`).
#[derive(serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<String> {
        self.token.or(self.access_token).filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_with_quotes_and_commas_in_scope() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull,push""#;
        assert_eq!(
            parse([h]),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/debian:pull,push".into()),
            })
        );
        let h = r#"bearer  realm = "http://127.0.0.1:1/t" , error="insufficient_scope", x="a \"q\"""#;
        let Some(Challenge::Bearer { realm, service, scope }) = parse([h]) else { panic!() };
        assert_eq!((realm.as_str(), service, scope), ("http://127.0.0.1:1/t", None, None));
        assert_eq!(params(r#"x="a \"q\"", y=plain"#).get("x").unwrap(), r#"a "q""#);
    }

    #[test]
    fn basic_and_unknown_schemes() {
        assert_eq!(parse([r#"Basic realm="Registry Realm""#]), Some(Challenge::Basic));
        // Bearer is preferred when a registry offers both; a Bearer without realm cannot be answered.
        let both = [r#"Basic realm="r""#, r#"Bearer realm="https://a/t""#];
        assert!(matches!(parse(both), Some(Challenge::Bearer { .. })));
        assert_eq!(parse(["Bearer service=x"]), None);
        assert_eq!(parse(["Negotiate", ""]), None);
    }

    #[test]
    fn token_or_access_token() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"a","expires_in":60}"#).unwrap();
        assert_eq!(t.into_token().as_deref(), Some("a"));
        let t: TokenResponse = serde_json::from_str(r#"{"token":"","access_token":""}"#).unwrap();
        assert_eq!(t.into_token(), None);
    }
}
