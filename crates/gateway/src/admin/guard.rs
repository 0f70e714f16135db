//! Who may use the admin listener: the bearer token (`[admin] token` / `token_file`) and the refusal of requests a
//! web browser sent. Probes (`/livez`, `/readyz`, `/healthz`) and the admin page (`/`, which holds no data of its
//! own) are always open; `/metrics` and the read-only JSON API need the token when their `[admin]` setting says
//! so; anything that changes state (`POST`) needs the token when one is configured and is refused whenever it
//! carries an `Origin` header, so a page the operator visits cannot reach it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use crate::config::AdminAccess;

/// The admin listener's access rules, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Guard {
    token: Option<Arc<str>>,
    api_reads: AdminAccess,
    metrics: AdminAccess,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    BrowserOrigin,
    Token,
}

impl Guard {
    pub fn new(token: Option<String>, api_reads: AdminAccess, metrics: AdminAccess) -> Guard {
        Guard {
            token: token.map(Arc::from),
            api_reads,
            metrics,
        }
    }

    fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        let mutating = !matches!(*method, Method::GET | Method::HEAD);
        if mutating && headers.contains_key(header::ORIGIN) {
            return Err(Refusal::BrowserOrigin);
        }
        let access = match path {
            "/" | "/livez" | "/readyz" | "/healthz" if !mutating => AdminAccess::Open,
            "/metrics" if !mutating => self.metrics,
            _ if !mutating => self.api_reads,
            _ => AdminAccess::Token,
        };
        match (&self.token, access) {
            (None, _) | (_, AdminAccess::Open) => Ok(()),
            (Some(token), AdminAccess::Token) => {
                if presented(headers).is_some_and(|given| bool::from(given.ct_eq(token.as_bytes())))
                {
                    Ok(())
                } else {
                    Err(Refusal::Token)
                }
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

/// The middleware: answers 403 to a browser's state-changing request and 401 without the token.
pub async fn enforce(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    match guard.check(request.method(), request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(Refusal::BrowserOrigin) => (
            StatusCode::FORBIDDEN,
            "admin: requests from a web page (with an Origin header) may not change state\n",
        )
            .into_response(),
        Err(Refusal::Token) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "admin: this endpoint needs the admin token (Authorization: Bearer ...)\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn guarded() -> Guard {
        Guard::new(Some("s3cret".into()), AdminAccess::Token, AdminAccess::Open)
    }

    #[test]
    fn probes_and_metrics_are_open_reads_and_posts_need_the_token() {
        let guard = guarded();
        let none = HeaderMap::new();
        assert_eq!(guard.check(&Method::GET, "/livez", &none), Ok(()));
        assert_eq!(guard.check(&Method::GET, "/readyz", &none), Ok(()));
        assert_eq!(guard.check(&Method::GET, "/healthz", &none), Ok(()));
        assert_eq!(guard.check(&Method::GET, "/metrics", &none), Ok(()));
        assert_eq!(
            guard.check(&Method::GET, "/api/topics", &none),
            Err(Refusal::Token)
        );
        assert_eq!(
            guard.check(&Method::POST, "/api/reload", &none),
            Err(Refusal::Token)
        );
        assert_eq!(
            guard.check(&Method::POST, "/livez", &none),
            Err(Refusal::Token)
        );
        let bearer = headers(&[(header::AUTHORIZATION, "Bearer s3cret")]);
        assert_eq!(guard.check(&Method::GET, "/api/topics", &bearer), Ok(()));
        assert_eq!(guard.check(&Method::POST, "/api/reload", &bearer), Ok(()));
        let lower = headers(&[(header::AUTHORIZATION, "bearer s3cret")]);
        assert_eq!(guard.check(&Method::POST, "/api/reload", &lower), Ok(()));
    }

    #[test]
    fn wrong_or_partial_tokens_are_refused() {
        let guard = guarded();
        for value in [
            "Bearer s3cre",
            "Bearer s3cretx",
            "Basic s3cret",
            "s3cret",
            "Bearer",
            "",
        ] {
            let given = headers(&[(header::AUTHORIZATION, value)]);
            assert_eq!(
                guard.check(&Method::POST, "/api/reload", &given),
                Err(Refusal::Token),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_browser_origin_is_refused_on_posts_even_with_the_token_or_without_one_configured() {
        let origin = headers(&[
            (header::ORIGIN, "https://evil.example"),
            (header::AUTHORIZATION, "Bearer s3cret"),
        ]);
        assert_eq!(
            guarded().check(&Method::POST, "/api/reload", &origin),
            Err(Refusal::BrowserOrigin)
        );
        let open = Guard::new(None, AdminAccess::Token, AdminAccess::Token);
        assert_eq!(
            open.check(&Method::POST, "/api/reload", &origin),
            Err(Refusal::BrowserOrigin)
        );
        assert_eq!(
            open.check(&Method::POST, "/api/reload", &HeaderMap::new()),
            Ok(())
        );
        assert_eq!(open.check(&Method::GET, "/api/topics", &origin), Ok(()));
    }

    #[test]
    fn metrics_and_reads_follow_their_settings() {
        let guard = Guard::new(Some("t".into()), AdminAccess::Open, AdminAccess::Token);
        let none = HeaderMap::new();
        assert_eq!(guard.check(&Method::GET, "/api/topics", &none), Ok(()));
        assert_eq!(
            guard.check(&Method::GET, "/metrics", &none),
            Err(Refusal::Token)
        );
    }
}
