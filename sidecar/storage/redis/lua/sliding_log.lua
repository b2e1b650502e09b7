-- sliding_log(key, now, hits, limit, window_ms, burst, count_rejected, window_end)
-- State: sorted set, score = time ms, member = "<time>:<hits>:<n>"; entries older than the
-- window are trimmed on every call, and refused calls add nothing, so it holds <= limit entries
-- (limit + 1 with count_rejected = 2, charged always).

-- Time until enough of the oldest entries of log ({time, hits}, oldest first, holding used
-- hits) leave the window for hits more to fit.
local function log_wait(log, used, now, w, hits, limit)
  if hits > limit then return w end
  local left = used
  for i = 1, #log do
    left = left - log[i][2]
    if left + hits <= limit then return math.max(1.0, log[i][1] + w - now) end
  end
  return w
end

local function sliding_log(key, now, hits, limit, w, burst, count_rejected, window_end)
  local trimmed = redis.call('ZREMRANGEBYSCORE', key, '-inf', now - w)
  local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local log = {}
  local used = 0
  for i = 1, #entries, 2 do
    local _, _, n = string.find(entries[i], '^[^:]+:(%d+):')
    n = tonumber(n)
    log[#log + 1] = {tonumber(entries[i + 1]), n}
    used = used + n
  end
  local after = used + hits
  if after <= limit then
    local reset = w
    if #log > 0 then reset = log[1][1] + w - now elseif hits > 0 then reset = w end
    if hits > 0 then log[#log + 1] = {now, hits} end
    return {'log', hits}, 1, limit - after, reset, after
  end
  if count_rejected == 2 and hits > 0 then
    -- Charged always (reported usage): recorded, and the wait counts it too. Once the log
    -- holds the limit, further hits fold into its newest entry, moved to now, so the set
    -- never holds more than limit + 1 entries.
    local state = {'log', hits}
    if used >= limit and #log > 0 then
      local last = log[#log]
      state = {'fold', last[2] + hits, entries[#entries - 1]}
      log[#log] = {now, last[2] + hits}
    else
      log[#log + 1] = {now, hits}
    end
    return state, 0, 0, log_wait(log, used + hits, now, w, hits, limit), after
  end
  return nil, 0, 0, log_wait(log, used, now, w, hits, limit), after
end
