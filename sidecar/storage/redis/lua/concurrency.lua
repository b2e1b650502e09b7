-- concurrency(key, now, hits, limit, window_ms, burst, count_rejected, window_end)
-- A rate check's read of a concurrency limit: whether `hits` more holders would fit now. It
-- never takes a slot (the lease_*.lua scripts do) and writes nothing. State: the lease set of
-- lease_acquire.lua; it is read on this server's clock (TIME), as the lease scripts write it,
-- not on `now` (the sidecar's), so every sidecar counts the same leases as held. `limit` is
-- the rule's max, `window_ms` its lease_ttl. The reset is the time until the earliest lease
-- held expires (none held: one lease_ttl).

local function concurrency(key, now, hits, limit, w, burst, count_rejected, window_end)
  local t = redis.call('TIME')
  local clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local after_now = string.format('(%d', clock)
  local held = redis.call('ZCOUNT', key, after_now, '+inf')
  local reset = w
  if held > 0 then
    local first = redis.call('ZRANGEBYSCORE', key, after_now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    reset = tonumber(first[2]) - clock
  end
  local after = held + hits
  if after <= limit then return nil, 1, limit - after, reset, after end
  return nil, 0, 0, reset, after
end
