//! HTTP/1.1 for the check endpoints: request heads and bodies read from whole read buffers
//! (keep-alive, pipelining, Content-Length and chunked bodies, `Expect: 100-continue`), the
//! REST and `/json` bodies decoded, and the answers written byte for byte as the general path
//! (aiohttp and `sidecar/transports/rest/answers.py`) writes them.
//!
//! What this path does not read exactly as the general path would (an unusual head, a body over
//! a limit, a route it does not serve) is handed to the general path whole, with the rest of
//! the connection; what it reads but cannot answer alone (an invalid body, whose error the
//! general path words) is referred back with its parts. So it only ever answers what it can
//! answer identically.

pub mod answer;
pub mod check;
pub mod chunked;
pub mod conn;
pub mod forward;
pub mod head;
pub mod outbox;
pub mod response;
pub mod rls_answer;
pub mod rls_json;
pub mod routes;
pub mod serve;
pub mod service;
pub mod text;
