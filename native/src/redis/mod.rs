//! The Redis side as batches: the commands of many planned requests in one pipeline, and their
//! replies back into decisions. The I/O stays with the caller: it sends
//! [`RedisBatch::commands`], reads [`RedisBatch::expected`] replies and hands their bytes to
//! [`RedisBatch::feed`], until there are no more commands.
//!
//! The commands are those `storage/redis.py` sends, byte for byte: `INCRBY key hits` +
//! `EXPIRE key ttl` per plain counter (the reference's layout, no MULTI), and one `EVALSHA` of
//! the driver script per algorithm check (one for all of a request's checks in an atomic
//! domain) with the KEYS / ARGV layout of `storage/scripts.py`. A batch takes up to three
//! round trips: `MGET` of the counters first when stop-increment mode needs them, the charge,
//! and `SCRIPT LOAD` + the refused `EVALSHA`s again when Redis had forgotten the script
//! (NOSCRIPT, after a restart or failover), as the Python topology does.

mod batch;
mod commands;

pub use batch::RedisBatch;

/// The algorithm driver script: its SHA1 (as EVALSHA names it) and its source.
#[derive(Clone, Debug, Default)]
pub struct RedisScript {
    pub sha: String,
    pub source: String,
}
