//! Retrying transient failures with exponential backoff.

use super::transport::CallError;
use std::future::Future;
use std::time::Duration;

/// How often and how patiently a transient failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Wait before the first retry; each further retry waits twice as long, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five retries over about 15 s: long enough to ride out a replica restart or a burst of
    /// 429s, short enough that a dead network is reported while the operator still waits.
    fn default() -> Self {
        RetryPolicy {
            retries: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (0-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.first_delay
            .checked_mul(factor)
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }

    /// Runs `call` until it succeeds, fails for good (`retryable` says no), or the retries are
    /// spent. `on_retry` hears of every failure that is retried.
    pub async fn run<T, F, Fut>(
        &self,
        retryable: impl Fn(&CallError) -> bool,
        mut on_retry: impl FnMut(&CallError),
        mut call: F,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut retry = 0;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if retry < self.retries && retryable(&e) => {
                    on_retry(&e);
                    tokio::time::sleep(self.delay(retry)).await;
                    retry += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy::default();
        let ms: Vec<u128> = (0..7).map(|i| p.delay(i).as_millis()).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(p.delay(u32::MAX), p.max_delay);
    }

    #[test]
    fn retries_transient_failures_only_and_gives_up() {
        let fast = RetryPolicy {
            retries: 3,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let calls = Cell::new(0);
        let retried = Cell::new(0);
        // Two transient failures, then success.
        let r = block_on(fast.run(
            CallError::is_transient,
            |_| retried.set(retried.get() + 1),
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 3 {
                        Err(CallError::Transient("busy".into()))
                    } else {
                        Ok(n)
                    }
                }
            },
        ));
        assert_eq!((r, retried.get()), (Ok(3), 2));
        // A permanent failure is not retried.
        calls.set(0);
        let r: Result<(), _> = block_on(fast.run(
            CallError::is_transient,
            |_| {},
            || {
                calls.set(calls.get() + 1);
                async { Err(CallError::Rejected("no".into())) }
            },
        ));
        assert_eq!((r, calls.get()), (Err(CallError::Rejected("no".into())), 1));
        // Transient failures stop after the retries: 1 + 3 attempts.
        calls.set(0);
        let r: Result<(), _> = block_on(fast.run(
            CallError::is_transient,
            |_| {},
            || {
                calls.set(calls.get() + 1);
                async { Err(CallError::Transient("busy".into())) }
            },
        ));
        assert_eq!((r.is_err(), calls.get()), (true, 4));
    }
}
