-- leaky_bucket(key, now, hits, limit, window_ms, burst, count_rejected, window_end)
-- GCRA. State: the theoretical arrival time (ms). Emission interval = window / limit;
-- burst - 1 extra requests of tolerance. A refused call learns exactly when one would pass.
local function leaky_bucket(key, now, hits, limit, w, burst, count_rejected, window_end)
  if limit <= 0 then return nil, 0, 0, w, hits end
  local interval = w / limit
  local tolerance = (burst - 1) * interval
  local tat = now
  local stored = redis.call('GET', key)
  if stored then tat = math.max(tonumber(stored), now) end
  local new_tat = tat + hits * interval
  local allow_at = new_tat - tolerance - interval
  if now < allow_at then
    if count_rejected == 2 then
      -- charged always (reported usage): the schedule moves on
      return {new_tat}, 0, 0, math.max(1.0, allow_at + hits * interval - now), hits
    end
    return nil, 0, 0, math.max(1.0, allow_at - now), hits
  end
  local remaining = math.floor((tolerance + interval - (new_tat - now)) / interval)
  if remaining < 0 then remaining = 0 end
  return {new_tat}, 1, remaining, new_tat - now, hits
end
