-- GCRA rate-limit decisions shared by every instance: each reads, decides and writes its key atomically.
--
-- KEYS[i]  a caller's key: its theoretical arrival time (epoch ms, as text); all in one hash slot
-- ARGV     five per key, in the order of KEYS: now (epoch ms), the rate's period (ms), requests per
--          period, burst (requests allowed back to back), cost (units this request spends)
--
-- The decisions that reach one instance in the same turn share a call; each is taken in order, so
-- two decisions on one key see each other. The arithmetic is that of gcra() in limiter.ts, in the
-- same double precision, so the caller rebuilds each full decision from the time read here.
-- Returns, per key, 1 (allowed) or 0 (denied) and the time read (false when none). A key expires
-- when its time has passed: an absent key means the same.
local out = {}
for i = 1, #KEYS do
  local a = (i - 1) * 5
  local now = tonumber(ARGV[a + 1])
  local interval = tonumber(ARGV[a + 2]) / tonumber(ARGV[a + 3])
  local cost = tonumber(ARGV[a + 5])
  local tolerance = math.max(0, interval * (tonumber(ARGV[a + 4]) - cost))
  local stored = redis.call('GET', KEYS[i])
  local tat = now
  if stored and tonumber(stored) > now then tat = tonumber(stored) end
  if tat - now > tolerance then
    out[#out + 1] = 0
  else
    local next = tat + interval * cost
    redis.call('SET', KEYS[i], string.format('%.17g', next), 'PX', math.max(1, math.ceil(next - now)))
    out[#out + 1] = 1
  end
  out[#out + 1] = stored
end
return out
