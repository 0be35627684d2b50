-- One GCRA rate-limit decision, shared by every instance: read, decide and write the key atomically.
--
-- KEYS[1]  the caller's key: its theoretical arrival time (epoch ms, as text)
-- ARGV[1]  now (epoch ms)
-- ARGV[2]  the rate's period (ms)
-- ARGV[3]  requests per period
-- ARGV[4]  burst (requests allowed back to back)
--
-- The arithmetic is that of gcra() in limiter.ts, in the same double precision, so the caller
-- rebuilds the full decision from the time read here. Returns {1 allowed | 0 denied, the time read
-- (false when none)}. The key expires when its time has passed: an absent key means the same.
local stored = redis.call('GET', KEYS[1])
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2]) / tonumber(ARGV[3])
local tolerance = interval * (tonumber(ARGV[4]) - 1)
local tat = now
if stored and tonumber(stored) > now then tat = tonumber(stored) end
if tat - now > tolerance then
  return {0, stored}
end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%.17g', next), 'PX', math.max(1, math.ceil(next - now)))
return {1, stored}
