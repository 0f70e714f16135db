//! Dispatch of client frames once CONNECTED, transactions included.

use super::*;

impl Connected {
    pub(super) fn command(
        &mut self,
        frame: Frame,
        backpressure: &mut Option<Backpressure>,
        now_ms: u64,
    ) -> Result<Step, StompError> {
        match frame.command {
            Command::Connect | Command::Stomp => Err(StompError::AlreadyConnected {
                command: frame.command,
            }),
            Command::Connected | Command::Message | Command::Receipt | Command::Error => {
                Err(StompError::BadCommand(frame.command))
            }
            Command::Disconnect => Ok(Step::Disconnect),
            Command::Subscribe => self.subscribe(&frame).map(|()| Step::Continue),
            Command::Unsubscribe => self.unsubscribe(&frame).map(|()| Step::Continue),
            Command::Begin => {
                let id = frame.require_header(header::TRANSACTION)?;
                self.transactions.begin(id).map(|()| Step::Continue)
            }
            Command::Abort => {
                let id = frame.require_header(header::TRANSACTION)?;
                self.transactions.abort(id).map(|()| Step::Continue)
            }
            Command::Commit => {
                let id = frame.require_header(header::TRANSACTION)?;
                for held in self.transactions.commit(id)? {
                    self.apply(held, backpressure, now_ms)?;
                }
                Ok(Step::Continue)
            }
            Command::Send | Command::Ack | Command::Nack => {
                if matches!(frame.command, Command::Ack | Command::Nack)
                    && frame.header(header::TRANSACTION).is_some()
                {
                    self.acks.check(ack_id(&frame, self.version)?)?;
                }
                if let Some(now) = self.transactions.hold(frame)? {
                    self.apply(now, backpressure, now_ms)?;
                }
                Ok(Step::Continue)
            }
        }
    }

    /// SEND, ACK or NACK, now (outside a transaction, or at COMMIT); a SEND's message is stamped `now_ms`.
    pub(super) fn apply(
        &mut self,
        frame: Frame,
        backpressure: &mut Option<Backpressure>,
        now_ms: u64,
    ) -> Result<(), StompError> {
        match frame.command {
            Command::Send => {
                if let Some(wait) = self.send(&frame, now_ms)? {
                    *backpressure = Some(wait);
                }
                Ok(())
            }
            Command::Ack => self.settle(&frame, false),
            _ => self.settle(&frame, true),
        }
    }
}
