//! A parsed request → the work it needs: a `Call` (what to ask the engine, and how to write
//! the answer once decided) or a `Referral` (the request's parts, for the general path's code
//! to answer: an invalid body, a forward-auth input it must judge, full mode's key endpoints).

use std::borrow::Cow;

use super::answer::{
    error_json, make_answer, push_result_json, rate_limit_headers, Families, StatusView, OVER_LIMIT,
};
use super::check::{decode_check, BodyLimits, Entries};
use super::conn::Request;
use super::forward::{forward_call, ForwardOptions};
use super::head::{Method, Reply};
use super::response::{Framing, JSON, TEXT};
use super::rls_answer::rls_json;
use super::rls_json::decode_rls;
use super::routes::{Route, Routes};
use crate::engine::Request as EngineRequest;
use crate::rls::Descriptor;

/// Everything the fast path needs to know of the settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub routes: Routes,
    pub limits: BodyLimits,
    pub forward: ForwardOptions,
    pub families: Families,
    pub framing: Framing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Check {
        itemized: bool,
    },
    /// Charged after the fact: every hit, past the limit too.
    Report {
        itemized: bool,
    },
    ForwardAuth {
        deny_status: u16,
    },
    Json,
}

/// A request the engine decides and this path answers.
#[derive(Debug)]
pub struct Call {
    pub kind: CallKind,
    pub domain: String,
    /// As the engine takes them: on REST each carries the request's hits (0: look without
    /// charging); on /json none does (the request's `hits_addend` counts).
    pub descriptors: Vec<Descriptor>,
    /// REST: each descriptor's hits; /json: the request's `hits_addend`.
    pub hits: u64,
    pub reply: Reply,
    pub continue_first: bool,
}

/// A request the general path's code answers, in parts.
#[derive(Debug)]
pub struct Referral {
    pub route: Route,
    pub method: Method,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub reply: Reply,
    pub continue_first: bool,
}

#[derive(Debug)]
pub enum Work {
    Call(Call),
    Refer(Referral),
}

pub fn work(request: Request<'_>, config: &Config) -> Work {
    let head = &request.head;
    let call = |kind: CallKind, domain: String, entries: Vec<Entries>, hits: u64| {
        // REST counts hits per descriptor (the general path's `Descriptor(entries, hits)`);
        // /json per request, as the RateLimitRequest says.
        let own = (kind != CallKind::Json).then_some(hits);
        let descriptors = entries
            .into_iter()
            .map(|entries| Descriptor {
                entries,
                limit: None,
                hits_addend: own,
            })
            .collect();
        Work::Call(Call {
            kind,
            domain,
            descriptors,
            hits,
            reply: head.reply,
            continue_first: request.continue_first,
        })
    };
    match request.route {
        Route::Check | Route::Report => {
            if let Some(c) = decode_check(&request.body, config.limits) {
                let itemized = c.itemized;
                let kind = if request.route == Route::Check {
                    CallKind::Check { itemized }
                } else {
                    CallKind::Report { itemized }
                };
                return call(kind, c.namespace, c.descriptors, c.hits);
            }
        }
        Route::ForwardAuth => {
            if let Some(c) = forward_call(head, &config.forward) {
                let kind = CallKind::ForwardAuth {
                    deny_status: c.deny_status,
                };
                return call(kind, c.namespace, vec![c.entries], 1);
            }
        }
        Route::Json => {
            if let Some(c) = decode_rls(&request.body) {
                return call(
                    CallKind::Json,
                    c.domain,
                    c.descriptors,
                    u64::from(c.hits_addend),
                );
            }
        }
        Route::KeyVerify | Route::KeyForwardAuth => {}
    }
    Work::Refer(refer(request))
}

fn refer(request: Request<'_>) -> Referral {
    let head = &request.head;
    let target = if head.query.is_empty() {
        head.path.to_owned()
    } else {
        format!("{}?{}", head.path, head.query)
    };
    Referral {
        route: request.route,
        method: head.method,
        target,
        headers: head
            .headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body: match request.body {
            Cow::Borrowed(b) => b.to_vec(),
            Cow::Owned(b) => b,
        },
        reply: head.reply,
        continue_first: request.continue_first,
    }
}

impl Call {
    /// What the engine is asked, at `now_ms`.
    pub fn engine_request(&self, now_ms: i64) -> EngineRequest<'_> {
        let json = self.kind == CallKind::Json;
        EngineRequest {
            domain: &self.domain,
            descriptors: &self.descriptors,
            // /json's hits_addend was read as a u32 (the message's type).
            hits_addend: if json { self.hits as u32 } else { 0 },
            now_ms,
            charge_always: matches!(self.kind, CallKind::Report { .. }),
            explicit: &[],
            options: None,
        }
    }

    /// The engine's decision as this request's answer. `headers` are the engine's own
    /// response headers (RESPONSE_HEADERS_ENABLED; /json sends them), `now` its clock.
    pub fn answer(
        &self,
        config: &Config,
        overall: u8,
        statuses: &[StatusView<'_>],
        engine_headers: &[(String, String)],
        now: f64,
        out: &mut Vec<u8>,
    ) {
        if self.kind == CallKind::Json {
            let status = if overall == OVER_LIMIT { 429 } else { 200 };
            let body = rls_json(overall, statuses, engine_headers);
            self.frame(
                config,
                status,
                &[("Content-Type", JSON)],
                body.as_bytes(),
                out,
            );
            return;
        }
        let answer = make_answer(overall, statuses, &self.descriptors, now);
        let mut body = String::with_capacity(256);
        let status = match self.kind {
            CallKind::Check { itemized } | CallKind::Report { itemized } => {
                push_result_json(
                    &mut body,
                    &answer.overall,
                    itemized.then_some(&answer.results),
                );
                200
            }
            CallKind::ForwardAuth { deny_status } => {
                push_result_json(&mut body, &answer.overall, None);
                if answer.overall.allowed {
                    200
                } else {
                    deny_status
                }
            }
            CallKind::Json => unreachable!("answered above"),
        };
        let rates = rate_limit_headers(&answer, config.families);
        let headers = std::iter::once(("Content-Type", JSON))
            .chain(rates.iter().map(|(n, v)| (*n, v.as_str())));
        config.framing.write(
            out,
            self.reply,
            self.continue_first,
            status,
            headers,
            body.as_bytes(),
        );
    }

    /// The answer of a call the service could not decide: `status` and the service's
    /// message (service.py's table), worded as each endpoint words its errors.
    pub fn failure(&self, config: &Config, status: u16, message: &str, out: &mut Vec<u8>) {
        if self.kind == CallKind::Json {
            let phrase = config
                .framing
                .reasons
                .iter()
                .find(|(s, _)| *s == status)
                .map_or("Unknown", |(_, r)| r.as_str());
            let text = format!("{phrase}: {message}\n");
            self.frame(
                config,
                status,
                &[("Content-Type", TEXT)],
                text.as_bytes(),
                out,
            );
            return;
        }
        let message = if status == 503 {
            Cow::Owned(format!("cannot decide now: {message}"))
        } else {
            Cow::Borrowed(message)
        };
        let body = error_json(&message, None);
        self.frame(
            config,
            status,
            &[("Content-Type", JSON)],
            body.as_bytes(),
            out,
        );
    }

    /// Any answer to this request: its fields (Content-Type first) and body.
    pub fn frame(
        &self,
        config: &Config,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        out: &mut Vec<u8>,
    ) {
        config.framing.write(
            out,
            self.reply,
            self.continue_first,
            status,
            headers.iter().copied(),
            body,
        );
    }
}

impl Referral {
    pub fn frame(
        &self,
        config: &Config,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        out: &mut Vec<u8>,
    ) {
        config.framing.write(
            out,
            self.reply,
            self.continue_first,
            status,
            headers.iter().copied(),
            body,
        );
    }
}
