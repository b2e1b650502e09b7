//! One HTTP/2 stream of a unary call, as the connection tracks it.

use std::sync::Arc;

use super::request::RequestHead;

/// Response DATA the peer's flow-control windows do not let us send yet.
#[derive(Clone, Debug)]
pub struct Pending {
    pub data: Vec<u8>,
    pub sent: usize,
    /// The trailers block to send once the data is out; None: the last DATA frame ends the
    /// stream.
    pub trailers: Option<Arc<[u8]>>,
}

impl Pending {
    pub fn remaining(&self) -> usize {
        self.data.len() - self.sent
    }
}

/// State of a stream from its HEADERS until both sides have ended it.
///
/// `body` is only allocated when a request spans several DATA frames; the common request (one
/// DATA frame with END_STREAM) is handed on without being copied here.
#[derive(Clone, Debug)]
pub struct Stream {
    pub id: u32,
    pub head: Arc<RequestHead>,
    pub recv_window: i64,
    pub send_window: i64,
    /// When the request began, then when the response got blocked.
    pub since: f64,
    pub deadline: Option<f64>,
    pub received: u64,
    pub remote_closed: bool,
    pub body: Option<Vec<u8>>,
    pub pending: Option<Pending>,
    /// The call is out for an answer (`Connection::respond`).
    pub dispatched: bool,
    /// ... held by the connection's handler (whose deadline the connection keeps).
    pub held: bool,
}

impl Stream {
    pub fn new(id: u32, head: Arc<RequestHead>, recv_window: i64, send_window: i64, now: f64)
               -> Stream {
        let deadline = head.timeout.map(|timeout| now + timeout);
        Stream { id, head, recv_window, send_window, since: now, deadline, received: 0,
                 remote_closed: false, body: None, pending: None, dispatched: false,
                 held: false }
    }
}
