//! Which requests the fast path answers: the check endpoints, by exact path and method as the
//! general path's router registers them. A path the router would match only after decoding
//! (`/v1/ch%65ck`) is not recognised here, so the general path answers it, as it would anyway.

use super::head::Method;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/check`
    Check,
    /// `POST /v1/report`
    Report,
    /// `/v1/forward-auth[/…]`, the methods of FORWARD_AUTH_METHODS
    ForwardAuth,
    /// `GET|POST /json` (the reference's; the router takes any method, the rest go there)
    Json,
    /// Full mode: `POST /v1/keys/verify`
    KeyVerify,
    /// Full mode: `/v1/keys/forward-auth[/…]`
    KeyForwardAuth,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Check => "check",
            Route::Report => "report",
            Route::ForwardAuth => "forward_auth",
            Route::Json => "json",
            Route::KeyVerify => "key_verify",
            Route::KeyForwardAuth => "key_forward_auth",
        }
    }
}

/// The general path's body limits, per route.
#[derive(Clone, Debug)]
pub struct Routes {
    /// Full mode's key endpoints are served.
    pub full: bool,
    /// VIVA_REST_MAX_BODY_BYTES: /v1/check, /v1/report and the key endpoints refuse more.
    pub max_body_bytes: usize,
    /// /json's limit (the HTTP application's client_max_size).
    pub json_max_body_bytes: usize,
}

impl Routes {
    pub fn route(&self, method: Method, path: &str) -> Option<Route> {
        let post = method == Method::Post;
        match path {
            "/v1/check" if post => Some(Route::Check),
            "/v1/report" if post => Some(Route::Report),
            "/json" if post || method == Method::Get => Some(Route::Json),
            "/v1/keys/verify" if post && self.full => Some(Route::KeyVerify),
            _ if under(path, "/v1/forward-auth") => Some(Route::ForwardAuth),
            _ if self.full && under(path, "/v1/keys/forward-auth") => Some(Route::KeyForwardAuth),
            _ => None,
        }
    }

    /// The largest body the route's handler reads: a longer one is the general path's to
    /// refuse (413, and what it does with the rest of the connection).
    pub fn body_limit(&self, route: Route) -> usize {
        match route {
            Route::Json => self.json_max_body_bytes,
            _ => self.max_body_bytes,
        }
    }
}

/// `path` is `prefix` or below it (the router's `prefix/{path:[\s\S]*}`).
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = Routes {
            full: false,
            max_body_bytes: 10,
            json_max_body_bytes: 20,
        };
        assert_eq!(r.route(Method::Post, "/v1/check"), Some(Route::Check));
        assert_eq!(r.route(Method::Get, "/v1/check"), None);
        assert_eq!(r.route(Method::Post, "/v1/check/"), None);
        assert_eq!(
            r.route(Method::Head, "/v1/forward-auth"),
            Some(Route::ForwardAuth)
        );
        assert_eq!(
            r.route(Method::Get, "/v1/forward-auth/a/b%20c"),
            Some(Route::ForwardAuth)
        );
        assert_eq!(r.route(Method::Get, "/v1/forward-authx"), None);
        assert_eq!(r.route(Method::Post, "/v1/keys/verify"), None);
        assert_eq!(r.route(Method::Put, "/json"), None);
        let full = Routes { full: true, ..r };
        assert_eq!(
            full.route(Method::Post, "/v1/keys/verify"),
            Some(Route::KeyVerify)
        );
        assert_eq!(
            full.route(Method::Options, "/v1/keys/forward-auth/x"),
            Some(Route::KeyForwardAuth)
        );
        assert_eq!(full.body_limit(Route::Json), 20);
    }
}
