-- Records the heartbeats and leaves of one shard, in the order given, atomically (one call per shard per turn).
--
-- KEYS[1]  seen:  ZSET identity -> last heartbeat (epoch ms), every identity seen within the retention
-- KEYS[2]  left:  ZSET identity -> its last heartbeat, for identities that left since that heartbeat
-- KEYS[3]  days:  HASH "<day>:a" -> identities active that day, "<day>:n" -> identities new that day
-- KEYS[4]  chans: ZSET channel -> latest heartbeat on it in this shard
-- KEYS[5 .. 4+D]      hll:<day> of each day below: HyperLogLog of the identities active that day
-- KEYS[5+D .. 4+D+C]  ch:<channel> of each channel below: ZSET identity -> last heartbeat on it
--
-- ARGV[1]  heartbeat timeout (ms)
-- ARGV[2]  retention cutoff (epoch ms): identities last seen before it are forgotten
-- ARGV[3]  trim budget: most stale entries removed per key per call, so no call runs long
-- ARGV[4]  prefix of this shard's channel keys ("{os:3}:ch:"), for leaves and for emptied channels
-- ARGV[5]  D, then D triples: day key (YYYY-MM-DD), day start (epoch ms), sketch expiry (epoch ms)
-- then     C, then C channel names
-- then     the operations, five fields each:
--            "b", identity, time (ms), day index 1..D, channel index 0..C (0: none)   a heartbeat
--            "l", identity, time (ms), 0, 0                                          a leave
--
-- Every key named or built here carries the shard's hash tag, so all sit in one Redis Cluster slot.
-- Times are the callers' clocks: an identity's last heartbeat only ever rises (ZADD GT).
-- Returns the number of operations applied.

local seen, left, days, chans = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local timeout = tonumber(ARGV[1])
local retention = ARGV[2]
local budget = tonumber(ARGV[3])
local channelPrefix = ARGV[4]

local function ms(number)
  return string.format('%d', number)
end

local a = 5
local dayCount = tonumber(ARGV[a]); a = a + 1
local dayKey, dayStart, dayExpiry = {}, {}, {}
for d = 1, dayCount do
  dayKey[d], dayStart[d], dayExpiry[d] = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  a = a + 3
end
local channelCount = tonumber(ARGV[a]); a = a + 1
local channel = {}
for c = 1, channelCount do
  channel[c] = ARGV[a]
  a = a + 1
end

local active, fresh = {}, {}
local latest = 0
local applied = 0
while a <= #ARGV do
  local kind, identity, time = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local now = tonumber(time)
  if now > latest then latest = now end
  if kind == 'b' then
    local d, c = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    local previous = redis.call('ZSCORE', seen, identity)
    -- First heartbeat of the day (or ever): counted once, whatever the number of instances.
    if not previous or tonumber(previous) < dayStart[d] then
      active[d] = (active[d] or 0) + 1
      if not previous then fresh[d] = (fresh[d] or 0) + 1 end
      local sketch = KEYS[4 + d]
      redis.call('PFADD', sketch, identity)
      redis.call('PEXPIREAT', sketch, dayExpiry[d])
    end
    redis.call('ZADD', seen, 'GT', time, identity)
    redis.call('ZREM', left, identity)
    if c > 0 then
      redis.call('ZADD', KEYS[4 + dayCount + c], 'GT', time, identity)
      redis.call('ZADD', chans, 'GT', time, channel[c])
    end
  else
    local last = redis.call('ZSCORE', seen, identity)
    -- Only an identity still online can leave; it stays in seen, so it still counts as active.
    if last and tonumber(last) >= now - timeout then
      redis.call('ZADD', left, last, identity)
      for _, name in ipairs(redis.call('ZRANGEBYSCORE', chans, ms(now - timeout), '+inf')) do
        redis.call('ZREM', channelPrefix .. name, identity)
      end
    end
  end
  applied = applied + 1
  a = a + 5
end

for d = 1, dayCount do
  if active[d] then redis.call('HINCRBY', days, dayKey[d] .. ':a', active[d]) end
  if fresh[d] then redis.call('HINCRBY', days, dayKey[d] .. ':n', fresh[d]) end
end

-- Housekeeping, bounded by the budget: stale entries go a little at a time, so memory stays bounded
-- by the identities within the retention and the heartbeats within the timeout.
local function stale(key, before)
  return redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. before, 'LIMIT', 0, budget)
end
local function trim(key, before)
  local entries = stale(key, before)
  if #entries > 0 then redis.call('ZREM', key, unpack(entries)) end
end
if latest > 0 then
  local cutoff = ms(latest - timeout)
  trim(left, cutoff)
  trim(seen, retention)
  for c = 1, channelCount do trim(KEYS[4 + dayCount + c], cutoff) end
  -- A channel whose latest heartbeat timed out has nobody online: drop it whole.
  local empty = stale(chans, cutoff)
  for _, name in ipairs(empty) do redis.call('DEL', channelPrefix .. name) end
  if #empty > 0 then redis.call('ZREM', chans, unpack(empty)) end
end
return applied
