//! Connect: version gate, authentication (by the `$authenticate` backend when a route names one and the
//! token is not empty, by the `[messageloop.auth]` settings otherwise), the subscriptions carried in
//! Connect (with their backend ACL checks, [`super::acl`]), then Connected.

use super::acl::Refusals;
use super::*;

impl Session {
    pub(super) fn connect(&mut self, id: String, connect: Connect, now: Now) {
        if self.generation == Some(Generation::G2) && !check_g2_version(&connect.version) {
            let error = Error::new(
                ErrorCode::VersionUnsupported,
                format!("unsupported protocol version {:?}", connect.version),
            );
            self.reply(id, now, OutboundBody::Error(Box::new(error)));
            self.close(DisconnectCode::UnsupportedVersion);
            return;
        }
        if !connect.token.is_empty() {
            if let Some(target) = self.context.router.authenticator() {
                return self.authenticate_by_proxy(id, connect, target, now);
            }
        }
        let credentials = Credentials {
            login: Some(connect.client_id.as_str()),
            secret: Some(connect.token.as_str()),
        };
        let identity = match self.context.authenticator.authenticate(credentials) {
            Ok(identity) => identity,
            Err(error) => {
                let (code, message) = match error {
                    AuthError::Missing => (
                        ErrorCode::AuthRequired,
                        "authentication required".to_owned(),
                    ),
                    other => (ErrorCode::AuthError, other.to_string()),
                };
                self.reply(
                    id,
                    now,
                    OutboundBody::Error(Box::new(Error::new(code, message))),
                );
                self.close(DisconnectCode::InvalidToken);
                return;
            }
        };
        self.connected(id, connect, identity, now);
    }

    /// Authenticated as `identity`: the subscriptions carried in Connect, then Connected.
    pub(super) fn connected(&mut self, id: String, connect: Connect, identity: Identity, now: Now) {
        let info = PresenceInfo {
            session_id: self.session_id.clone(),
            user_id: identity.name.clone(),
            client_id: connect.client_id.clone(),
            connected_at_ms: i64::try_from(now.unix_ms).unwrap_or(i64::MAX),
        };
        self.state = State::Connected { identity, info };
        self.connect_subscriptions(id, connect, now);
    }

    /// Connect's subscriptions (less those the backend refused), then Connected.
    pub(super) fn finish_connect(
        &mut self,
        id: String,
        connect: Connect,
        refused: &Refusals,
        now: Now,
    ) {
        let mut after = Vec::new();
        let mut snapshots = Vec::new();
        if !connect.subscriptions.is_empty() {
            let ack = self.subscribe_entries(&id, connect.subscriptions, refused, now, &mut after);
            match ack.map(|ack| ack.body) {
                Some(OutboundBody::SubscribeAck(ack)) => snapshots = ack.presence,
                _ => return,
            }
        }
        let connected = Connected {
            session_id: self.session_id.clone(),
            subscriptions: self.subscriptions.keys().cloned().collect(),
            resumed: false,
            stream_epoch: self.context.settings.epoch.clone(),
            accepted_caps: connect.caps,
        };
        self.reply(
            id.clone(),
            now,
            OutboundBody::Connected(Box::new(connected)),
        );
        for snapshot in snapshots {
            self.reply(id.clone(), now, OutboundBody::Presence(Box::new(snapshot)));
        }
        self.outbox.extend(after);
    }
}
