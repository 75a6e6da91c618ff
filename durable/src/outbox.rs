//! Frames waiting to be sent, and their coalescing into batches.
//!
//! Recipients are fixed when a frame is queued, so a connection that joins later never gets an
//! older frame out of order (its `welcome` and replay already cover it). Consecutive events for
//! the same recipients merge into one `events` frame of at most `batch_max_events` events: one
//! frame per socket instead of one per event is what keeps a busy room fast. Replies to one
//! connection (acks, errors, pongs) do not split a batch: an event may join a batch queued before
//! them, since no reply is about an event that comes later (an ack then arrives after its own
//! event and a few more, never before it). Welcomes, gaps, presence diffs and closes do split it.

use edgeroom_protocol::{Event, Events, ServerMessage};

/// One frame for a set of connections, or a close.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// Send `message` to each connection in `recipients`, in its own form.
    Deliver {
        /// The frame.
        message: ServerMessage,
        /// Connection ids.
        recipients: Vec<u64>,
    },
    /// Close connection `to` with a close code and reason.
    Close {
        /// Connection id.
        to: u64,
        /// A code from `edgeroom_protocol::close_code`.
        code: u16,
        /// Human-readable reason.
        reason: String,
    },
}

#[derive(Debug)]
enum Queued {
    Events { events: Vec<Event>, bytes: usize, recipients: Vec<u64> },
    Other(Outgoing),
}

/// Bytes an event adds to a frame: its body, key and topic plus a bound on the fixed fields.
pub(crate) fn event_bytes(event: &Event) -> usize {
    event.body.len()
        + event.key.as_ref().map_or(0, String::len)
        + event.topic.as_ref().map_or(0, String::len)
        + 96
}

impl Queued {
    /// A reply to one connection that says nothing about later events, so events may pass it.
    fn is_reply(&self) -> bool {
        matches!(
            self,
            Queued::Other(Outgoing::Deliver {
                message: ServerMessage::Ack(_) | ServerMessage::Error(_) | ServerMessage::Pong(_),
                ..
            })
        )
    }
}

/// The queue of frames not yet sent.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: Vec<Queued>,
    events: usize,
}

impl Outbox {
    /// Queues an event, merging it into the previous batch when that goes to the same recipients
    /// and stays within `max_events` events and `max_bytes` bytes.
    pub fn push_event(&mut self, event: Event, recipients: Vec<u64>, max_events: usize, max_bytes: usize) {
        if recipients.is_empty() {
            return;
        }
        self.events += 1;
        let size = event_bytes(&event);
        let open_batch = self.queue.iter_mut().rev().find(|queued| !queued.is_reply());
        if let Some(Queued::Events { events, bytes, recipients: last }) = open_batch {
            if *last == recipients && events.len() < max_events.max(1) && *bytes + size <= max_bytes {
                events.push(event);
                *bytes += size;
                return;
            }
        }
        self.queue.push(Queued::Events { events: vec![event], bytes: size, recipients });
    }

    /// Queues any other frame.
    pub fn push(&mut self, message: ServerMessage, recipients: Vec<u64>) {
        if !recipients.is_empty() {
            self.queue.push(Queued::Other(Outgoing::Deliver { message, recipients }));
        }
    }

    /// Queues a close.
    pub fn close(&mut self, to: u64, code: u16, reason: String) {
        self.queue.push(Queued::Other(Outgoing::Close { to, code, reason }));
    }

    /// Events queued since the last [`Outbox::take`].
    pub fn pending_events(&self) -> usize {
        self.events
    }

    /// Drops everything queued.
    pub fn discard(&mut self) {
        self.events = 0;
        self.queue.clear();
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Everything queued, in order; a batch of one event is sent as a plain `event`.
    pub fn take(&mut self) -> Vec<Outgoing> {
        self.events = 0;
        std::mem::take(&mut self.queue)
            .into_iter()
            .map(|queued| match queued {
                Queued::Other(outgoing) => outgoing,
                Queued::Events { mut events, recipients, .. } => {
                    let message = match (events.pop(), events.is_empty()) {
                        (Some(only), true) => ServerMessage::Event(only),
                        (Some(last), false) => {
                            events.push(last);
                            ServerMessage::Events(Events { events })
                        }
                        (None, _) => ServerMessage::Events(Events { events }),
                    };
                    Outgoing::Deliver { message, recipients }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeroom_protocol::{Ack, Body, EventKind, Gap, Pong, PresenceDiff};
    use uuid::Uuid;

    fn event(seq: u64) -> Event {
        Event { seq, kind: EventKind::Message, body: Body::null(), sender: None, topic: None, key: None }
    }

    fn seqs(message: &ServerMessage) -> Vec<u64> {
        match message {
            ServerMessage::Event(e) => vec![e.seq],
            ServerMessage::Events(batch) => batch.events.iter().map(|e| e.seq).collect(),
            _ => vec![],
        }
    }

    fn batches(outbox: &mut Outbox) -> Vec<(Vec<u64>, Vec<u64>)> {
        outbox
            .take()
            .iter()
            .filter_map(|o| match o {
                Outgoing::Deliver { message, recipients } => Some((seqs(message), recipients.clone())),
                Outgoing::Close { .. } => None,
            })
            .collect()
    }

    #[test]
    fn coalesces_events_for_the_same_recipients_across_replies() {
        let mut outbox = Outbox::default();
        for seq in 1..=5 {
            outbox.push_event(event(seq), vec![1, 2], 3, usize::MAX);
            outbox.push(Ack { op_id: Uuid::from_u128(seq.into()), seq }.into(), vec![1]);
        }
        outbox.push(Pong { nonce: None }.into(), vec![2]);
        outbox.push_event(event(6), vec![1, 2], 3, usize::MAX);
        outbox.push_event(event(7), vec![1, 2, 3], 3, usize::MAX);
        assert_eq!(outbox.pending_events(), 7);
        let acks = |seqs: &[u64]| seqs.iter().map(|_| (vec![], vec![1])).collect::<Vec<_>>();
        let mut expected = vec![(vec![1, 2, 3], vec![1, 2])];
        expected.extend(acks(&[1, 2, 3]));
        expected.push((vec![4, 5, 6], vec![1, 2]));
        expected.extend(acks(&[4, 5]));
        expected.push((vec![], vec![2]));
        expected.push((vec![7], vec![1, 2, 3]));
        assert_eq!(batches(&mut outbox), expected, "every ack after its event; a new recipient set splits");
        assert!(outbox.is_empty());
        assert_eq!(outbox.pending_events(), 0);
    }

    #[test]
    fn welcomes_gaps_and_presence_split_batches() {
        let mut outbox = Outbox::default();
        outbox.push_event(event(1), vec![1, 2], 10, usize::MAX);
        outbox.push(Gap { resume_from: 0, seq: 1 }.into(), vec![2]);
        outbox.push_event(event(2), vec![1, 2], 10, usize::MAX);
        outbox.push(PresenceDiff { joined: vec![], left: vec![9], updated: vec![] }.into(), vec![1, 2]);
        outbox.push_event(event(3), vec![1, 2], 10, usize::MAX);
        let seqs: Vec<Vec<u64>> = batches(&mut outbox).into_iter().map(|(seqs, _)| seqs).collect();
        assert_eq!(seqs, vec![vec![1], vec![], vec![2], vec![], vec![3]]);
    }

    #[test]
    fn a_single_event_is_a_plain_event_frame() {
        let mut outbox = Outbox::default();
        outbox.push_event(event(1), vec![1], 100, usize::MAX);
        assert!(matches!(&outbox.take()[..], [Outgoing::Deliver { message: ServerMessage::Event(_), .. }]));
    }

    #[test]
    fn batches_are_capped_by_bytes_too() {
        let mut outbox = Outbox::default();
        let big = |seq| Event { body: Body::from_value(&"x".repeat(60_000)).unwrap(), ..event(seq) };
        for seq in 1..=10 {
            outbox.push_event(big(seq), vec![1], 100, 256 * 1024);
        }
        let sizes: Vec<usize> = outbox
            .take()
            .iter()
            .map(|o| match o {
                Outgoing::Deliver { message, .. } => seqs(message).len(),
                Outgoing::Close { .. } => 0,
            })
            .collect();
        assert_eq!(sizes, vec![4, 4, 2], "60 KB events, at most 256 KiB a frame");
    }
}
