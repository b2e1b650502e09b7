-- sliding_window(key, now, hits, limit, window_ms, burst, count_rejected, window_end)
-- State: hash {s = window start ms, c = current count, p = previous count}.
-- Weighted two-window counter: previous * (time left in window / window) + current.
local function sliding_wait(prev, cur, hits, limit, w, elapsed)
  -- floor(prev * left / w) <= room once more than w * (1 - (room + 1) / prev) has passed
  local room = limit - cur - hits
  if room >= 0 then
    return math.max(1.0, w * (1 - (room + 1) / prev) - elapsed + 1)
  end
  local room_next = limit - hits
  if room_next < 0 then return 2 * w - elapsed end
  if cur <= room_next then return w - elapsed end
  return w - elapsed + math.max(1.0, w * (1 - (room_next + 1) / cur) + 1)
end

local function sliding_window(key, now, hits, limit, w, burst, count_rejected, window_end)
  local start = now - (now % w)
  local cur, prev = 0, 0
  local st = redis.call('HMGET', key, 's', 'c', 'p')
  if st[1] then
    local s = tonumber(st[1])
    if s == start then
      cur, prev = tonumber(st[2]), tonumber(st[3])
    elseif s == start - w then
      prev = tonumber(st[2])
    end
  end
  local elapsed = now - start
  local weighted = math.floor(prev * ((w - elapsed) / w))
  local after = weighted + cur + hits
  if after <= limit then
    return {start, cur + hits, prev}, 1, limit - after, w - elapsed, after
  end
  if count_rejected >= 1 then
    -- charged anyway: the wait counts this request too
    cur = cur + hits
    return {start, cur, prev}, 0, 0, sliding_wait(prev, cur, hits, limit, w, elapsed), after
  end
  return nil, 0, 0, sliding_wait(prev, cur, hits, limit, w, elapsed), after
end
