//! One HTTP/1 connection with bounded patience.
//!
//! hyper's `header_read_timeout` starts when a connection begins to wait for a request head,
//! so on its own it also closes idle keep-alive connections after a few seconds: behind a load
//! balancer that reuses connections for 60 s, that races its next request into a 502. Here the
//! timer hyper asks for knows whether the client has started sending: until the first byte of
//! the next request it runs to the keep-alive idle timeout, from that byte to the header timeout.
//! A connection's first request gets the header timeout from accept on: a client that connects
//! and sends nothing holds no socket for long.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

use super::socket::Activity;
use crate::config::ConnectionLimits;

/// The timer hyper uses for its header read timeout, per connection.
#[derive(Clone)]
pub struct HeadTimer {
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    /// The connection's one timer, made at its first wait and moved for each request after:
    /// hyper asks for a new timer every time it waits for a request head, and a new tokio timer
    /// is registered with the runtime's timer wheel under its lock, and removed again when the
    /// head comes, on every request. A timer moved later is only marked (no lock); it is
    /// registered again only when moved earlier (a client that started sending) or once it
    /// has fired.
    sleep: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl HeadTimer {
    pub fn new(activity: Arc<Activity>, limits: ConnectionLimits) -> Self {
        Self {
            activity,
            limits,
            sleep: Arc::default(),
        }
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(Plain(Box::pin(tokio::time::sleep(duration))))
    }

    /// hyper calls this when the connection starts waiting for a request head, with
    /// `deadline` = now + header timeout.
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let deadline = match self.activity.has_written() {
            // An answered connection is idle now: it may stay so up to the keep-alive timeout,
            // from hyper's "now" (its deadline less the header timeout: one clock read, not two).
            true => {
                deadline
                    .checked_sub(self.limits.header_read_timeout)
                    .unwrap_or(deadline)
                    + self.limits.keep_alive_timeout
            }
            false => deadline,
        };
        Box::pin(HeadDeadline {
            activity: Arc::clone(&self.activity),
            reads_at_start: self.activity.reads(),
            header_timeout: self.limits.header_read_timeout,
            started_sending: false,
            deadline,
            sleep: Arc::clone(&self.sleep),
        })
    }
}

/// Fires at the idle deadline, or `header_timeout` after the client's first byte if sooner.
struct HeadDeadline {
    activity: Arc<Activity>,
    reads_at_start: u64,
    header_timeout: Duration,
    started_sending: bool,
    deadline: Instant,
    /// The connection's timer ([`HeadTimer`]), set to `deadline` when polled.
    sleep: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl Future for HeadDeadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        // hyper polls this right after each read that left the head incomplete, so "now" is
        // within a poll of the first byte.
        if !this.started_sending && this.activity.reads() != this.reads_at_start {
            this.started_sending = true;
            this.deadline = this.deadline.min(Instant::now() + this.header_timeout);
        }
        let mut sleep = crate::sync::lock(&this.sleep);
        let sleep =
            sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(this.deadline.into())));
        if sleep.deadline() != this.deadline.into() {
            sleep.as_mut().reset(this.deadline.into());
        }
        sleep.as_mut().poll(cx)
    }
}

/// A plain sleep, for any other timeout hyper might ask for.
struct Plain(Pin<Box<tokio::time::Sleep>>);

impl Future for Plain {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Sleep for HeadDeadline {}
impl Sleep for Plain {}
