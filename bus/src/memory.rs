//! The in-process bus for single-node mode.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::{Bus, BusMessage, BusStats, Subscription, Topic, topics_of};

/// Messages a subscriber may fall behind by before it loses the oldest.
const SUBSCRIBER_BUFFER: usize = 1024;

/// Broadcast channels per topic, inside one process.
#[derive(Debug, Default)]
pub struct MemoryBus {
    topics: Mutex<HashMap<Topic, broadcast::Sender<BusMessage>>>,
    stats: BusStats,
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Bus for MemoryBus {
    fn publish(&self, message: BusMessage) {
        BusStats::add(&self.stats.published, 1);
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        for topic in topics_of(&message) {
            if let Some(sender) = topics.get(&topic)
                && sender.send(message.clone()).is_err()
            {
                // Nobody listens any more: forget the topic.
                topics.remove(&topic);
            }
        }
    }

    fn subscribe(&self, topic: Topic) -> Subscription {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let receiver = topics
            .entry(topic)
            .or_insert_with(|| broadcast::channel(SUBSCRIBER_BUFFER).0)
            .subscribe();
        drop(topics);
        Subscription::new(BroadcastStream::new(receiver).filter_map(|m| async move { m.ok() }))
    }

    fn is_connected(&self) -> bool {
        true
    }

    fn stats(&self) -> &BusStats {
        &self.stats
    }
}
