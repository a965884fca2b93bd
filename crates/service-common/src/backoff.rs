//! The one retry pause of the services: doubling from a first pause up to a cap, back to the first after a
//! success. Used wherever a loop waits for a dependency to come back (the stream, the consumer, a relay pass).

use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max, next: first }
    }

    /// The pause to take now; the one after it is twice as long, up to the cap.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }

    /// Back to the first pause, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps for the next pause; false when `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let pause = self.next_pause();
        tokio::select! {
            _ = tokio::time::sleep(pause) => true,
            _ = shutdown.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let pauses: Vec<u128> = (0..4).map(|_| b.next_pause().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_pause(), Duration::from_millis(100));
    }
}
