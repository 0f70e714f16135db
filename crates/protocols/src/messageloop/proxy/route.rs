//! Which backend serves a call: the first route, over all proxies in config order, whose channel and
//! method globs both match.

use std::time::Duration;

use super::config::ProxyConfig;
use super::glob;

/// The route key of Connect authentication (upstream `SystemMethodAuthenticate`, channel `""`).
pub const AUTHENTICATE: &str = "$authenticate";
/// The route method of the subscribe ACL and the OnSubscribed hook (channel = the subscribed channel).
pub const SUBSCRIBE: &str = "subscribe";
/// The route method of the publish ACL (channel = the publish channel).
pub const PUBLISH: &str = "publish";
/// The route method of the OnUnsubscribed hook (channel = the unsubscribed channel).
pub const UNSUBSCRIBE: &str = "unsubscribe";
/// The route method of the OnDisconnected hook (channel `""`).
pub const DISCONNECT: &str = "disconnect";

/// The routes of all proxies, flattened in config order.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    channel: String,
    method: String,
    target: Target,
}

/// A matched backend: its index in `messageloop.proxy` and its call timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub proxy: usize,
    pub timeout: Duration,
}

impl Router {
    pub fn new(proxies: &[ProxyConfig]) -> Router {
        let routes = proxies
            .iter()
            .enumerate()
            .flat_map(|(proxy, config)| {
                let target = Target {
                    proxy,
                    timeout: config.timeout(),
                };
                config.routes.iter().map(move |route| Entry {
                    channel: route.channel.clone(),
                    method: route.method.clone(),
                    target,
                })
            })
            .collect();
        Router { routes }
    }

    /// The backend for a call on `channel` with `method`, if any route matches.
    pub fn route(&self, channel: &str, method: &str) -> Option<Target> {
        self.routes
            .iter()
            .find(|entry| {
                glob::matches(&entry.channel, channel) && glob::matches(&entry.method, method)
            })
            .map(|entry| entry.target)
    }

    /// The backend that checks Connect tokens, if any.
    pub fn authenticator(&self) -> Option<Target> {
        self.route("", AUTHENTICATE)
    }

    /// The backend that checks subscribes to `channel` and hears of them, if any.
    pub fn subscriber(&self, channel: &str) -> Option<Target> {
        self.route(channel, SUBSCRIBE)
    }

    /// The backend that checks publishes to `channel`, if any.
    pub fn publisher(&self, channel: &str) -> Option<Target> {
        self.route(channel, PUBLISH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(name: &str, timeout_ms: u64, routes: &[(&str, &str)]) -> ProxyConfig {
        let routes: Vec<String> = routes
            .iter()
            .map(|(c, m)| format!("{{ channel = {c:?}, method = {m:?} }}"))
            .collect();
        toml::from_str(&format!(
            "name = {name:?}\nendpoint = \"http://x/\"\ntimeout_ms = {timeout_ms}\nroutes = [{}]\n",
            routes.join(", ")
        ))
        .unwrap()
    }

    #[test]
    fn first_route_in_config_order_wins() {
        let router = Router::new(&[
            proxy("a", 10, &[("orders.*", "get"), ("", AUTHENTICATE)]),
            proxy("b", 20, &[("*", "*")]),
        ]);
        assert_eq!(router.route("orders.eu.x", "get").map(|t| t.proxy), Some(0));
        assert_eq!(router.route("orders.eu.x", "put").map(|t| t.proxy), Some(1));
        let auth = router.authenticator().unwrap();
        assert_eq!((auth.proxy, auth.timeout), (0, Duration::from_millis(10)));
        assert_eq!(
            Router::new(&[proxy("a", 1, &[("x", "*")])]).route("y", "m"),
            None
        );
        assert_eq!(Router::default().authenticator(), None);
        let acl = Router::new(&[proxy(
            "acl",
            5,
            &[("room.*", SUBSCRIBE), ("room.*", PUBLISH)],
        )]);
        assert_eq!(acl.subscriber("room.1").map(|t| t.proxy), Some(0));
        assert_eq!(acl.publisher("room.1").map(|t| t.proxy), Some(0));
        assert_eq!(acl.subscriber("hall"), None);
        assert_eq!(acl.route("room.1", UNSUBSCRIBE), None);
    }
}
