-- fixed_window(key, now, hits, limit, window_ms, burst, count_rejected, window_end)
-- State: a plain integer string (INCRBY-compatible with envoyproxy/ratelimit's keys).
-- Returns new_state (table or nil), allowed, remaining, reset_ms, used.
local function fixed_window(key, now, hits, limit, window_ms, burst, count_rejected, window_end)
  local count = tonumber(redis.call('GET', key) or '0')
  local after = count + hits
  local reset = window_end - now
  if after > limit and count_rejected == 0 then
    return nil, 0, 0, reset, count
  end
  local remaining = limit - after
  if remaining < 0 then remaining = 0 end
  local allowed = 0
  if after <= limit then allowed = 1 end
  return {after}, allowed, remaining, reset, after
end
