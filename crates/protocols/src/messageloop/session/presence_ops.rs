//! Presence: join/leave announcements on the presence topic and presence queries.

use super::*;

impl Session {
    pub(super) fn announce(&self, channel: &str, action: PresenceAction, info: &PresenceInfo) {
        let mut envelope = Envelope::new(
            channel::presence_topic(channel),
            Bytes::new(),
            self.mailbox.owner(),
        );
        envelope.headers = presence::event_headers(action, info);
        self.context.bus.publish(envelope);
    }

    pub(super) fn presence_query(&mut self, id: String, channel: &str, now: Now) {
        let pattern = match channel::subscribe_pattern(channel, self.generation) {
            Ok(pattern) if pattern.is_exact() => pattern,
            Ok(_) => {
                let error = Error::new(ErrorCode::BadRequest, "presence needs an exact channel");
                return self.reply(id, now, OutboundBody::Error(Box::new(error)));
            }
            Err(error) => return self.reply(id, now, OutboundBody::Error(Box::new(error))),
        };
        if !self
            .identity()
            .is_some_and(|identity| identity.may_subscribe(&pattern))
        {
            let error = Error::new(ErrorCode::PermissionDenied, "presence denied");
            return self.reply(id, now, OutboundBody::Error(Box::new(error)));
        }
        let snapshot = self.context.presence.snapshot(channel);
        self.reply(id, now, OutboundBody::Presence(Box::new(snapshot)));
    }
}
