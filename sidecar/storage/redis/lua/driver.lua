-- The entry point, appended after the algorithm functions.
-- KEYS: one counter key per checked descriptor.
-- ARGV[1] = now (ms since the epoch, integer), ARGV[2] = atomic (1: charge all or none),
-- then 8 values per key: algorithm, limit, window_ms, burst, hits, count_rejected (0, 1, or 2:
-- charge even when refused, whatever the algorithm), ttl_ms, window_end_ms.
-- Returns 4 values per key: allowed (0/1), remaining, reset_ms (string, full precision), used.
local ALGORITHMS = {
  fixed_window = fixed_window, sliding_window = sliding_window, sliding_log = sliding_log,
  token_bucket = token_bucket, leaky_bucket = leaky_bucket, concurrency = concurrency,
}

local function fmt(x) return string.format('%.17g', x) end

local function run_check(i, now, hits_override)
  local b = 2 + (i - 1) * 8
  local algo = ALGORITHMS[ARGV[b + 1]]
  local hits = tonumber(ARGV[b + 5])
  if hits_override then hits = hits_override end
  local state, allowed, remaining, reset, used = algo(KEYS[i], now, hits, tonumber(ARGV[b + 2]),
    tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 6]), tonumber(ARGV[b + 8]))
  return {state = state, allowed = allowed, remaining = remaining, reset = reset, used = used,
          algo = ARGV[b + 1], ttl = tonumber(ARGV[b + 7]), hits = hits}
end

local function save(key, v, now)
  local s = v.state
  if v.algo == 'fixed_window' then
    redis.call('SET', key, s[1], 'PX', v.ttl)
  elseif v.algo == 'sliding_window' then
    redis.call('HSET', key, 's', fmt(s[1]), 'c', fmt(s[2]), 'p', fmt(s[3]))
    redis.call('PEXPIRE', key, v.ttl)
  elseif v.algo == 'sliding_log' then
    if s[1] == 'fold' then
      redis.call('ZREM', key, s[3])
      local n = redis.call('ZCOUNT', key, now, now)
      redis.call('ZADD', key, now, string.format('%d:%d:%d', now, s[2], n))
    elseif v.hits > 0 then
      local n = redis.call('ZCOUNT', key, now, now)
      redis.call('ZADD', key, now, string.format('%d:%d:%d', now, v.hits, n))
    end
    redis.call('PEXPIRE', key, v.ttl)
  elseif v.algo == 'token_bucket' then
    redis.call('HSET', key, 't', fmt(s[1]), 'l', fmt(s[2]))
    redis.call('PEXPIRE', key, v.ttl)
  else
    redis.call('SET', key, fmt(s[1]), 'PX', v.ttl)
  end
end

local now = tonumber(ARGV[1])
local atomic = ARGV[2] == '1'
local verdicts = {}
local refused = false
for i = 1, #KEYS do
  verdicts[i] = run_check(i, now, nil)
  if verdicts[i].allowed == 0 then refused = true end
end
if atomic and refused then
  -- All or nothing: charge nobody, and show the others what they have left untouched.
  for i = 1, #KEYS do
    if verdicts[i].allowed == 1 then verdicts[i] = run_check(i, now, 0) end
    verdicts[i].state = nil
  end
end
local out = {}
for i = 1, #KEYS do
  local v = verdicts[i]
  if v.state then save(KEYS[i], v, now) end
  out[#out + 1] = v.allowed
  out[#out + 1] = v.remaining
  out[#out + 1] = fmt(v.reset)
  out[#out + 1] = v.used
end
return out
