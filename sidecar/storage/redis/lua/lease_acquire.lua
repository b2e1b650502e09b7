-- Take a slot in one descriptor's lease set for a new lease, if one is free.
-- KEYS[1] = the lease set: a sorted set of lease tokens, each scored by its expiry (ms since
--           the epoch, on this server's clock: TIME, so every sidecar agrees); it expires
--           with its last lease.
-- ARGV[1] = the lease token (the random part of the lease id)
-- ARGV[2] = the time to live of the lease (ms)
-- ARGV[3] = the most leases held at once (the rule's max)
-- ARGV[4] = 1: take a slot even when none is free (shadow mode); 0: refuse then
-- Leases that have expired are dropped first (an expiry at or before now has expired).
-- Returns {taken (0/1), leases held after, this lease's expiry (0: not taken),
--          the earliest expiry among the leases held (0: none), now} (times in ms).
local key, token = KEYS[1], ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local held = redis.call('ZCARD', key)
local taken, expires = 0, 0
if held < tonumber(ARGV[3]) or ARGV[4] == '1' then
  expires = now + tonumber(ARGV[2])
  held = held + redis.call('ZADD', key, expires, token)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  -- A second past the last expiry: the set's own expiry is clean-up only, so it never
  -- drops a lease the scores (read against TIME) still hold.
  redis.call('PEXPIREAT', key, last[2] + 1000)
  taken = 1
end
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {taken, held, expires, tonumber(first[2] or 0), now}
