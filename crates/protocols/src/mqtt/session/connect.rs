//! CONNECT → CONNACK: the protocol level, credentials (the password is the token the listener's
//! [`Authenticator`](crate::auth::Authenticator) checks, the user name its login), the client id (assigned when
//! empty), keep-alive, the will, and the session: a new one, or the one kept for this client id (clean start
//! 0). 5.0 enhanced authentication (an Authentication Method) is refused with 0x8C.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::mqtt::names::topic_from_mqtt;
use core_bus::Envelope;
use mqttbytes::v5::{ConnAck, ConnAckProperties, Connect, ConnectReturnCode, LastWill};
use mqttbytes::Protocol as Level;

use super::aliases_out::OutboundAliases;
use super::outgoing::Outgoing;
use super::subscribe::Subscriptions;
use super::{Connected, EarlierConnections, Flow, Session};
use crate::auth::{unguessable_name, AuthError, Credentials, Identity};
use crate::mqtt::bridge;
use crate::mqtt::codec::{Outbound, Version};
use crate::mqtt::reason::ReasonString;
use crate::mqtt::store::{Holder, SavedSession};

/// A CONNECT accepted, waiting for its client id's previous connection to end before CONNACK.
pub(crate) struct Accepted {
    version: Version,
    identity: Identity,
    client_id: String,
    /// The client id gatewayd chose (5.0 Assigned Client Identifier).
    assigned: Option<String>,
    will: Option<Will>,
    keep_alive: u16,
    server_keep_alive: Option<u16>,
    requested_expiry: u32,
    session_expiry: u32,
    max_in_flight: usize,
    clean: bool,
    request_problem_information: bool,
    /// Topic aliases gatewayd may send: the lower of the client's Topic Alias Maximum and ours.
    outbound_aliases: u16,
}

/// A will: the message published when the connection ends without DISCONNECT, after `delay`.
#[derive(Debug, Clone)]
pub struct Will {
    pub envelope: Envelope,
    pub retain: bool,
    pub delay: Duration,
    pub client_id: String,
}

impl Session {
    pub(super) fn connect(&mut self, connect: Connect) -> Flow {
        let version = match connect.protocol {
            Level::V4 => Version::V311,
            Level::V5 => Version::V5,
        };
        self.version = Some(version);
        let properties = connect.properties.clone();
        // Bounds every packet from here on, the CONNACK included (§3.2.2.3.8).
        self.client_max_packet = properties
            .as_ref()
            .and_then(|p| p.max_packet_size)
            .map(|size| size as usize);
        if let Some(properties) = properties.as_ref() {
            // §4.12: an authentication method the server does not support is refused (gatewayd supports none);
            // §3.1.2.11.10: Authentication Data without a method is a Protocol Error.
            if let Some(method) = &properties.authentication_method {
                return self.connack_refusal(
                    ConnectReturnCode::BadAuthenticationMethod,
                    &format!(
                        "authentication method {method} not supported (no enhanced authentication)"
                    ),
                );
            }
            if properties.authentication_data.is_some() {
                return self.connack_refusal(
                    ConnectReturnCode::ProtocolError,
                    "authentication data without an authentication method",
                );
            }
        }
        if properties.as_ref().and_then(|p| p.receive_maximum) == Some(0) {
            return self.connack_refusal(ConnectReturnCode::ProtocolError, "receive maximum 0");
        }
        let login = connect.login.as_ref();
        let credentials = Credentials {
            login: login.map(|l| l.username.as_str()).filter(|u| !u.is_empty()),
            secret: login.map(|l| l.password.as_str()),
        };
        let authenticated = match &self.certificate {
            Some(names) => self.settings.auth.authenticate_certificate(names),
            None => self.settings.auth.authenticate(credentials),
        };
        let identity = match authenticated {
            Ok(identity) => identity,
            Err(_) if self.certificate.is_some() => {
                return self.connack_refusal(
                    ConnectReturnCode::NotAuthorized,
                    "client certificate not authorized",
                )
            }
            Err(AuthError::Missing) => {
                return self
                    .connack_refusal(ConnectReturnCode::NotAuthorized, "credentials required")
            }
            Err(error) => {
                tracing::debug!(%error, "mqtt: CONNECT refused");
                return self.connack_refusal(
                    ConnectReturnCode::BadUserNamePassword,
                    "bad user name or password",
                );
            }
        };
        let mut assigned = None;
        let client_id = if connect.client_id.is_empty() {
            if version == Version::V311 && !connect.clean_session {
                return self.connack_refusal(
                    ConnectReturnCode::ClientIdentifierNotValid,
                    "an empty client identifier needs clean session 1",
                );
            }
            let id = format!("gatewayd-{}", unguessable_name());
            assigned = Some(id.clone());
            id
        } else {
            connect.client_id.clone()
        };
        let will = match connect.last_will.as_ref() {
            Some(will) => match self.will(will, &client_id, &identity) {
                Ok(will) => Some(will),
                Err((code, why)) => return self.connack_refusal(code, &why),
            },
            None => None,
        };
        let max_keep_alive = self.settings.max_keep_alive_secs;
        let (keep_alive, server_keep_alive) = match version {
            Version::V5 if connect.keep_alive > max_keep_alive => {
                (max_keep_alive, Some(max_keep_alive))
            }
            _ => (connect.keep_alive, None),
        };
        let requested_expiry = match version {
            Version::V5 => properties
                .as_ref()
                .and_then(|p| p.session_expiry_interval)
                .unwrap_or(0),
            Version::V311 if connect.clean_session => 0,
            Version::V311 => u32::MAX,
        };
        let session_expiry = requested_expiry.min(self.settings.max_session_expiry_secs);
        let client_receive_max = properties
            .as_ref()
            .and_then(|p| p.receive_maximum)
            .unwrap_or(u16::MAX);
        let max_in_flight = usize::from(client_receive_max.min(self.settings.receive_maximum));

        let accepted = Accepted {
            version,
            identity,
            client_id,
            assigned,
            will,
            keep_alive,
            server_keep_alive,
            requested_expiry,
            session_expiry,
            max_in_flight,
            clean: connect.clean_session,
            // §3.1.2.11.7: absent means 1.
            request_problem_information: properties.as_ref().and_then(|p| p.request_problem_info)
                != Some(0),
            outbound_aliases: properties
                .as_ref()
                .and_then(|p| p.topic_alias_max)
                .unwrap_or(0)
                .min(self.settings.topic_alias_maximum),
        };
        let previous = self.shared.sessions.claim(
            &accepted.client_id,
            Holder {
                connection: self.origin.connection,
                kick: self.kick.clone(),
                released: self.released.clone(),
            },
        );
        match previous {
            // The connection that held the client id is told to go; its session is taken once it has.
            Some(released) => {
                self.handover = Some(Box::new((accepted, released)));
                Flow::Continue
            }
            None => self.establish(accepted),
        }
    }

    /// The connection that held the client id has ended (or did not in time): CONNACK with the session it left.
    pub(super) fn establish(&mut self, accepted: Accepted) -> Flow {
        let Accepted {
            version,
            identity,
            client_id,
            assigned,
            will,
            keep_alive,
            server_keep_alive,
            requested_expiry,
            session_expiry,
            max_in_flight,
            clean,
            request_problem_information,
            outbound_aliases,
        } = accepted;
        let sessions = self.shared.sessions.clone();
        let resumed = if clean {
            drop(sessions.take(&client_id));
            None
        } else {
            sessions.take(&client_id)
        };
        let session_present = resumed.is_some();
        let saved = resumed.unwrap_or_else(|| SavedSession {
            mailbox: self.shared.bus.mailbox(self.origin),
            subscriptions: Subscriptions::default(),
            outgoing: Outgoing::new(max_in_flight),
            awaiting_release: BTreeSet::new(),
            earlier_connections: EarlierConnections::default(),
        });
        let SavedSession {
            mailbox,
            subscriptions,
            mut outgoing,
            awaiting_release,
            earlier_connections,
        } = saved;
        outgoing.set_max_in_flight(max_in_flight);
        let resend = outgoing.resend();
        self.connected = Some(Box::new(Connected {
            identity,
            client_id,
            mailbox,
            keep_alive: (keep_alive > 0).then(|| Duration::from_secs(u64::from(keep_alive))),
            will: will.map(Box::new),
            subscriptions,
            aliases: BTreeMap::new(),
            outbound_aliases: OutboundAliases::new(outbound_aliases),
            awaiting_release,
            outgoing,
            request_problem_information,
            session_expiry,
            earlier_connections,
        }));
        let mut connack = ConnAck::new(ConnectReturnCode::Success, session_present);
        if version == Version::V5 {
            let mut properties = ConnAckProperties::new();
            properties.receive_max = Some(self.settings.receive_maximum);
            properties.max_packet_size = u32::try_from(self.settings.max_packet_size).ok();
            properties.topic_alias_max = Some(self.settings.topic_alias_maximum);
            properties.retain_available = Some(1);
            properties.wildcard_subscription_available = Some(1);
            properties.shared_subscription_available = Some(1);
            properties.assigned_client_identifier = assigned;
            properties.server_keep_alive = server_keep_alive;
            if requested_expiry != session_expiry {
                properties.session_expiry_interval = Some(session_expiry);
            }
            connack.properties = Some(properties);
        }
        self.send(Outbound::ConnAck(Box::new(connack)));
        for packet in resend {
            self.send(packet);
        }
        Flow::Continue
    }

    /// The will of CONNECT, or the CONNACK code refusing it and why.
    fn will(
        &self,
        will: &LastWill,
        client_id: &str,
        identity: &Identity,
    ) -> Result<Will, (ConnectReturnCode, String)> {
        let topic = topic_from_mqtt(&will.topic).map_err(|_| {
            (
                ConnectReturnCode::TopicNameInvalid,
                format!("will topic name invalid: {}", will.topic),
            )
        })?;
        if !identity.may_publish(&topic) {
            return Err((
                ConnectReturnCode::NotAuthorized,
                format!("not authorized to publish the will to {}", will.topic),
            ));
        }
        let mut publish =
            mqttbytes::v5::Publish::from_bytes(will.topic.clone(), will.qos, will.message.clone());
        publish.retain = will.retain;
        let properties = will.properties.as_ref();
        publish.properties = properties.map(|p| mqttbytes::v5::PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            topic_alias: None,
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
            subscription_identifiers: Vec::new(),
            content_type: p.content_type.clone(),
        });
        let envelope = bridge::to_envelope(&publish, topic, self.origin).map_err(|_| {
            (
                ConnectReturnCode::PayloadFormatInvalid,
                "will payload format indicator 1 but the payload is not UTF-8".to_owned(),
            )
        })?;
        let delay = properties.and_then(|p| p.delay_interval).unwrap_or(0);
        Ok(Will {
            envelope,
            retain: will.retain,
            delay: Duration::from_secs(u64::from(delay)),
            client_id: client_id.to_owned(),
        })
    }

    /// Answers CONNECT with a refusal (in 5.0 with `why` as its reason string) and closes.
    pub(super) fn connack_refusal(&mut self, code: ConnectReturnCode, why: &str) -> Flow {
        tracing::debug!(?code, why, "mqtt: CONNECT refused");
        let mut connack = ConnAck::new(code, false);
        if self.version == Some(Version::V5) {
            // 5.0 CONNACK always carries a property list.
            let mut properties = ConnAckProperties::new();
            properties.reason_string = ReasonString::new(why).map(ReasonString::into_string);
            connack.properties = Some(properties);
        }
        self.send(Outbound::ConnAck(Box::new(connack)));
        Flow::Close
    }
}
