-- Free a lease's slot.
-- KEYS[1] = the lease set (see lease_acquire.lua)
-- ARGV[1] = the lease token
-- Leases that have expired are dropped first: releasing an expired lease finds nothing.
-- Returns {released (0/1), leases held after, 0,
--          the earliest expiry among the leases held (0: none), now} (times in ms).
local key, token = KEYS[1], ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local released = redis.call('ZREM', key, token)
local held = redis.call('ZCARD', key)
local first = {}
if held > 0 then
  -- the set now lives as long as its longest remaining lease
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  -- A second past the last expiry: the set's own expiry is clean-up only, so it never
  -- drops a lease the scores (read against TIME) still hold.
  redis.call('PEXPIREAT', key, last[2] + 1000)
  first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
end
return {released, held, 0, tonumber(first[2] or 0), now}
