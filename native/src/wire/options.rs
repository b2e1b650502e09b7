//! The limits and timeouts of one connection (the fast transport's H2Options: the reasons for
//! each default are written there).

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Advertised SETTINGS_MAX_CONCURRENT_STREAMS; more are refused (REFUSED_STREAM).
    pub max_concurrent_streams: usize,
    /// Larger request messages get RESOURCE_EXHAUSTED.
    pub max_message_size: usize,
    /// Advertised SETTINGS_MAX_HEADER_LIST_SIZE (decoded size).
    pub max_header_list_size: usize,
    /// A larger compressed header block is a flood: ENHANCE_YOUR_CALM.
    pub max_header_block_size: usize,
    /// Advertised SETTINGS_INITIAL_WINDOW_SIZE.
    pub stream_window: i64,
    /// The connection receive window (advertised with a WINDOW_UPDATE in the preface).
    pub connection_window: i64,
    /// Request bytes held for incomplete streams past which connection credit is withheld.
    pub max_buffered_bytes: i64,
    /// Seconds for the preface and first SETTINGS.
    pub handshake_timeout: f64,
    /// Seconds without a stream before GOAWAY(NO_ERROR).
    pub idle_timeout: f64,
    /// Seconds for a request (and a header block) to be complete.
    pub request_timeout: f64,
    /// Seconds a response may wait for the peer's flow control.
    pub write_timeout: f64,
    /// Seconds a graceful drain waits for its PING's ACK.
    pub drain_ping_timeout: f64,
}

impl Default for Options {
    fn default() -> Options {
        const MIB: usize = 1024 * 1024;
        Options {
            max_concurrent_streams: 256,
            max_message_size: 4 * MIB,
            max_header_list_size: 16 * 1024,
            max_header_block_size: 64 * 1024,
            stream_window: MIB as i64,
            connection_window: MIB as i64,
            max_buffered_bytes: 8 * MIB as i64,
            handshake_timeout: 10.0,
            idle_timeout: 300.0,
            request_timeout: 30.0,
            write_timeout: 30.0,
            drain_ping_timeout: 1.0,
        }
    }
}
