-- Hold a lease's slot for another time to live, from now, if it still holds one.
-- KEYS[1] = the lease set (see lease_acquire.lua)
-- ARGV[1] = the lease token
-- ARGV[2] = the time to live from now (ms)
-- Leases that have expired are dropped first: an expired lease is not renewed (its slot may
-- be another holder's already).
-- Returns {renewed (0/1), leases held after, this lease's expiry (0: not held),
--          the earliest expiry among the leases held (0: none), now} (times in ms).
local key, token = KEYS[1], ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local renewed, expires = 0, 0
if redis.call('ZSCORE', key, token) then
  expires = now + tonumber(ARGV[2])
  redis.call('ZADD', key, 'XX', expires, token)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  -- A second past the last expiry: the set's own expiry is clean-up only, so it never
  -- drops a lease the scores (read against TIME) still hold.
  redis.call('PEXPIREAT', key, last[2] + 1000)
  renewed = 1
end
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {renewed, redis.call('ZCARD', key), expires, tonumber(first[2] or 0), now}
