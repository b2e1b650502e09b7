-- token_bucket(key, now, hits, limit, window_ms, burst, count_rejected, window_end)
-- State: hash {t = tokens, l = last refill time ms}. Refills limit tokens per window,
-- continuously, up to burst; a refused call takes nothing.
local function token_bucket(key, now, hits, limit, w, burst, count_rejected, window_end)
  local rate = limit / w
  local capacity = burst
  local tokens = capacity
  local st = redis.call('HMGET', key, 't', 'l')
  if st[1] then
    local elapsed = now - tonumber(st[2])
    if elapsed < 0 then elapsed = 0 end
    tokens = math.min(capacity, tonumber(st[1]) + elapsed * rate)
  end
  if hits <= tokens then
    tokens = tokens - hits
    local full_in = w
    if rate > 0 then full_in = (capacity - tokens) / rate end
    return {tokens, now}, 1, math.floor(tokens), full_in, hits
  end
  local state = nil
  if count_rejected == 2 then
    -- charged always (reported usage): into debt, paid back by refills
    tokens = tokens - hits
    state = {tokens, now}
  end
  local wait = w
  if hits <= capacity and rate > 0 then wait = (hits - tokens) / rate end
  return state, 0, 0, math.max(1.0, wait), hits
end
