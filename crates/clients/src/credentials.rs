//! What a client presents when it connects: a token and, for STOMP, a login. Each protocol carries them its own
//! way (STOMP CONNECT `login`/`passcode`, MessageLoop Connect `token`, Loom hello `token`, Goomerang
//! `Authorization: Bearer` on the upgrade, chanserv an `AUTH <token>` line in front of each request, MQTT CONNECT
//! user name and password).

/// Credentials for [`super::Client::connect`]; the default is none (anonymous).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// STOMP `login`, MQTT user name; the other protocols have no login.
    pub login: Option<String>,
    /// STOMP `passcode`, MessageLoop Connect `token`, Loom hello `token`, Goomerang bearer token, chanserv
    /// `AUTH` token (a static token or a JWT).
    pub token: Option<String>,
}

/// Never prints the token, so credentials can appear in debug output and logs.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
