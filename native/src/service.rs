//! The service behind the native wire: the rate-limit and health calls of the fast transport
//! answered by the engine inside `Connection::feed`, counted the way `sidecar/service.py`
//! counts the calls it answers (requests, latency, errors by kind, in flight), so Python only
//! exports the counts on scrape.
//!
//! On the memory store a call is decided at once. On Redis it is held: planned later, with
//! the other calls of the event-loop turn, into one `RedisBatch`, and answered when the batch
//! is done ([`Service::finish`]). Answers and errors carry the words of the Python path for
//! the same request (`transports/rls_proto.py`, `service.py`, `transports/fast.py`).

use std::time::Instant;

use crate::engine::{Decision, Engine, EngineError, Request};
use crate::rls::{RateLimitRequest, Unit};
use crate::rules::DomainOptions;
use crate::wire::grpc::Status;
use crate::wire::handler::{Answer, Call, CallHandler, Handled, Payload};
use crate::wire::proto::ServingStatus;
use crate::wire::request::Method;

/// The `err_type` labels of `ratelimit_service_should_rate_limit_error`, in `errors` order.
pub const ERROR_KINDS: [&str; 4] = ["service_error", "redis_error", "no_config", "internal"];
/// The upper bounds of the latency histogram (`observability/metrics.py`); a last bucket
/// counts what is above them all.
pub const LATENCY_BOUNDS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Request metrics of the calls answered here, since they were last taken.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallMetrics {
    pub requests: u64,
    pub errors: [u64; 4],
    /// Per bucket of `LATENCY_BOUNDS` (not cumulative), then the overflow bucket.
    pub buckets: [u64; LATENCY_BOUNDS.len() + 1],
    pub latency_sum: f64,
    /// Calls held now (not reset by `take`).
    pub in_flight: i64,
}

impl CallMetrics {
    pub fn observe(&mut self, seconds: f64) {
        let i = LATENCY_BOUNDS.iter().position(|&b| seconds <= b).unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[i] += 1;
        self.latency_sum += seconds;
    }

    /// The counts since the last call; they start over (the in-flight gauge stays).
    pub fn take(&mut self) -> CallMetrics {
        let in_flight = self.in_flight;
        let taken = std::mem::take(self);
        self.in_flight = in_flight;
        taken
    }

    /// The answer for an engine error, counted under its kind (`service.failure_of`).
    fn error(&mut self, error: &EngineError) -> Answer {
        let (kind, status) = match error {
            EngineError::Request(_) => (0, Status::InvalidArgument),
            EngineError::Storage { .. } => (1, Status::Unavailable),
            EngineError::NoRules => (2, Status::Unavailable),
        };
        self.errors[kind] += 1;
        Answer::error(status, error.to_string())
    }
}

/// A rate-limit call held for a Redis batch.
#[derive(Clone, Debug)]
pub struct HeldCall {
    pub stream_id: u32,
    pub request: RateLimitRequest,
    pub now_ms: i64,
    started: Instant,
}

impl HeldCall {
    /// The engine's request for this call.
    pub fn engine_request(&self) -> Request<'_> {
        Request {
            domain: &self.request.domain,
            descriptors: &self.request.descriptors,
            hits_addend: self.request.hits_addend,
            now_ms: self.now_ms,
            charge_always: false,
            explicit: &[],
            options: None::<&DomainOptions>,
        }
    }
}

pub struct Service {
    pub metrics: CallMetrics,
    /// Whether the sidecar is healthy (grpc.health.v1 SERVING).
    pub serving: bool,
    /// The service names health checks may ask about; others are left to Python (whose
    /// NOT_FOUND message quotes the name as Python's repr does).
    pub services: Vec<String>,
    /// Calls are held for Redis instead of decided on the memory store.
    pub redis: bool,
    /// Calls held during the current `feed`, for the caller to queue with their connection.
    pub held: Vec<HeldCall>,
}

impl Service {
    pub fn new(redis: bool, services: Vec<String>) -> Service {
        Service { metrics: CallMetrics::default(), serving: true, services, redis,
                  held: Vec::new() }
    }

    /// The handler `Connection::feed` offers calls to, deciding with `engine`.
    pub fn handler<'a>(&'a mut self, engine: &'a mut Engine) -> ServiceHandler<'a> {
        ServiceHandler { service: self, engine }
    }

    /// The answer to a held call whose batch ended with `result`.
    pub fn finish(&mut self, call: &HeldCall, result: &Result<Decision, EngineError>) -> Answer {
        self.metrics.in_flight -= 1;
        let answer = match result {
            Ok(decision) => Answer::RateLimit(decision.to_response()),
            Err(error) => self.metrics.error(error),
        };
        self.metrics.observe(call.started.elapsed().as_secs_f64());
        answer
    }
}

pub struct ServiceHandler<'a> {
    service: &'a mut Service,
    engine: &'a mut Engine,
}

impl CallHandler for ServiceHandler<'_> {
    fn offer(&mut self, call: Call, now_ms: u64) -> Handled {
        match call.payload {
            Payload::RateLimit(request) => {
                self.rate_limit(call.stream_id, request, now_ms as i64)
            }
            Payload::Health(ref service) if self.service.services.contains(service) => {
                let status = if self.service.serving { ServingStatus::Serving }
                             else { ServingStatus::NotServing };
                Handled::Answer(Answer::Health(status))
            }
            Payload::Health(_) => Handled::Left(call),
            Payload::Malformed { method: Method::RateLimit, message } => {
                // Refused before the engine: a request, answered at once, and its error.
                let metrics = &mut self.service.metrics;
                metrics.requests += 1;
                metrics.observe(0.0);
                let text = format!("malformed RateLimitRequest: {message}");
                Handled::Answer(metrics.error(&EngineError::Request(text)))
            }
            Payload::Malformed { method: Method::Health, message } => Handled::Answer(
                Answer::error(Status::InvalidArgument,
                              format!("malformed HealthCheckRequest: {message}"))),
        }
    }
}

impl ServiceHandler<'_> {
    fn rate_limit(&mut self, stream_id: u32, request: RateLimitRequest, now_ms: i64) -> Handled {
        let started = Instant::now();
        let metrics = &mut self.service.metrics;
        metrics.requests += 1;
        if let Err(error) = check_descriptors(&request) {
            metrics.observe(0.0);
            return Handled::Answer(metrics.error(&error));
        }
        let call = HeldCall { stream_id, request, now_ms, started };
        if self.service.redis {
            metrics.in_flight += 1;
            self.service.held.push(call);
            return Handled::Held;
        }
        let answer = match self.engine.decide(&call.engine_request()) {
            Ok(decision) => Answer::RateLimit(decision.to_response()),
            Err(error) => metrics.error(&error),
        };
        metrics.observe(started.elapsed().as_secs_f64());
        Handled::Answer(answer)
    }
}

/// The checks `rls_proto.make_descriptor` makes of each decoded descriptor, in its order, with
/// its words (before the engine's own: those of an empty domain come after these there).
fn check_descriptors(request: &RateLimitRequest) -> Result<(), EngineError> {
    for (i, d) in request.descriptors.iter().enumerate() {
        if let Some(hits) = d.hits_addend.filter(|&h| h > u64::from(u32::MAX)) {
            return Err(EngineError::Request(format!(
                "descriptors[{i}].hits_addend: {hits} is too large; expected at most 4294967295"
            )));
        }
        if let Some(limit) = &d.limit {
            if u64::try_from(limit.unit).ok().and_then(Unit::from_wire).is_none() {
                return Err(EngineError::Request(format!(
                    "descriptors[{i}].limit.unit: {} is not a unit; expected SECOND..YEAR",
                    limit.unit
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineOptions, Jitter};
    use crate::rls::{Descriptor, LimitOverride};

    fn call(sid: u32, payload: Payload) -> Call {
        Call { stream_id: sid, payload, deadline: None }
    }

    fn request(domain: &str, unit: i32) -> RateLimitRequest {
        RateLimitRequest {
            domain: domain.into(),
            descriptors: vec![Descriptor {
                entries: vec![("k".into(), "v".into())],
                limit: Some(LimitOverride { requests_per_unit: 1, unit }),
                hits_addend: None,
            }],
            hits_addend: 0,
        }
    }

    fn engine() -> Engine {
        Engine::new(EngineOptions::default(), Jitter::Fixed { values: vec![0], next: 0 })
    }

    #[test]
    fn memory_calls_are_answered_and_counted() {
        let (mut service, mut engine) = (Service::new(false, vec!["".into()]), engine());
        let mut handler = service.handler(&mut engine);
        // No rules loaded: UNAVAILABLE, counted as no_config.
        let Handled::Answer(Answer::Error(e)) =
            handler.offer(call(1, Payload::RateLimit(request("d", 1))), 0) else { panic!() };
        assert_eq!((e.status, e.message.as_str()),
                   (Status::Unavailable, "no rate limit configuration loaded"));
        let Handled::Answer(Answer::Error(e)) =
            handler.offer(call(3, Payload::RateLimit(request("", 9))), 0) else { panic!() };
        assert_eq!(e.message, "descriptors[0].limit.unit: 9 is not a unit; expected SECOND..YEAR");
        let health = handler.offer(call(5, Payload::Health("".into())), 0);
        assert_eq!(health, Handled::Answer(Answer::Health(ServingStatus::Serving)));
        let other = call(7, Payload::Health("other".into()));
        assert_eq!(handler.offer(other.clone(), 0), Handled::Left(other));
        let m = service.metrics.take();
        assert_eq!((m.requests, m.errors), (2, [1, 0, 1, 0]));
        assert_eq!(m.buckets.iter().sum::<u64>(), 2);
        assert_eq!(service.metrics.take().requests, 0);
    }

    #[test]
    fn redis_calls_are_held_then_finished() {
        let (mut service, mut engine) = (Service::new(true, Vec::new()), engine());
        let handled = service.handler(&mut engine)
            .offer(call(1, Payload::RateLimit(request("d", 1))), 5);
        assert_eq!(handled, Handled::Held);
        assert_eq!(service.metrics.in_flight, 1);
        let held = service.held.pop().unwrap();
        assert_eq!((held.stream_id, held.now_ms), (1, 5));
        let error = EngineError::Storage { message: "redis down".into(), transient: true };
        let answer = service.finish(&held, &Err(error));
        assert_eq!(answer, Answer::error(Status::Unavailable, "redis down"));
        let m = service.metrics.take();
        assert_eq!((m.requests, m.errors, m.in_flight), (1, [0, 1, 0, 0], 0));
    }

    #[test]
    fn malformed_requests_are_refused_with_the_decoders_words() {
        let (mut service, mut engine) = (Service::new(false, Vec::new()), engine());
        let mut handler = service.handler(&mut engine);
        let bad = Payload::Malformed { method: Method::RateLimit, message: "truncated".into() };
        assert_eq!(handler.offer(call(1, bad), 0), Handled::Answer(Answer::error(
            Status::InvalidArgument, "malformed RateLimitRequest: truncated")));
        let bad = Payload::Malformed { method: Method::Health, message: "truncated".into() };
        assert_eq!(handler.offer(call(3, bad), 0), Handled::Answer(Answer::error(
            Status::InvalidArgument, "malformed HealthCheckRequest: truncated")));
        assert_eq!(service.metrics.take().errors, [1, 0, 0, 0]);
    }
}
