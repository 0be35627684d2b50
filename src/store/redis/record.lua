-- Records the heartbeats, leaves and erasures of one shard, in the order given, atomically (one call per shard per
-- turn). An erasure is an operation here, not a script of its own, so it keeps its place among the heartbeats and
-- leaves of the same turn: a heartbeat sent before it is erased with it, one sent after it counts as new.
--
-- KEYS[1]  seen:  ZSET identity -> last heartbeat (epoch ms), every identity seen within the retention
-- KEYS[2]  left:  ZSET identity -> its last heartbeat, for identities that left since that heartbeat
-- KEYS[3]  days:  HASH "<day>:a" -> identities active that day, "<day>:n" -> identities new that day
-- KEYS[4]  chans: ZSET channel -> latest heartbeat on it in this shard
-- KEYS[5]  hist:  HASH "u" -> the instant the history is settled until (settle.lua), "c:<channel>" -> the count
--                 online then ("c:" the total)
-- KEYS[6]  hlog:  LIST of changes of the online counts not settled yet, "<ms>,<+1|-1>,<channel>" ("" the total)
-- KEYS[7]  hidden: ZSET identity -> time of its heartbeat, for identities whose latest heartbeat opted out of
--                 presence lookups
-- KEYS[8 .. 7+D]      hll:<day> of each day below: HyperLogLog of the identities active that day
-- KEYS[8+D .. 7+D+C]  ch:<channel> of each channel below: ZSET identity -> last heartbeat on it
--
-- ARGV[1]  heartbeat timeout (ms)
-- ARGV[2]  retention (ms): an identity last seen longer than this before an operation's time is forgotten (it
--          counts as new, an erasure does not find it); the trims remove what is older than the latest time minus it
-- ARGV[3]  trim budget: most stale entries removed per key per call, so no call runs long
-- ARGV[4]  prefix of this shard's channel keys ("{os:3}:ch:"), for leaves and for emptied channels
-- ARGV[5]  the most unsettled changes kept (beyond it, the history starts again from the live counts)
-- ARGV[6]  D, then D triples: day key (YYYY-MM-DD), day start (epoch ms), sketch expiry (epoch ms)
-- then     C, then C channel names
-- then     the operations, five fields each:
--            "b", identity, time (ms), day index 1..D, channel index 0..C (0: none)   a heartbeat
--            "h", the same as "b"                     a heartbeat opting out of presence lookups ("presence": false)
--            "l", identity, time (ms), 0, 0                                          a leave
--            "e", identity, time (ms), 0, 0                                          an erasure
--
-- Every key named or built here carries the shard's hash tag, so all sit in one Redis Cluster slot.
-- Times are the callers' clocks: an identity's last heartbeat only ever rises (ZADD GT).
--
-- History (docs/analytics.md): settle.lua counts, for every member of seen and of each ch:<channel>, a fall of the
-- count at its last heartbeat + timeout + 1 ms (its implicit expiry), if that instant is at or after u. What the sorted
-- sets cannot tell is logged here, at its instant: an identity coming online, a leave, and the implicit expiry an
-- update of the score hides (an expiry that happened, or the one a leave stands in for) when it is not settled yet.
-- An erasure removes the identity from seen and the channels' sets, which hides their implicit expiries from
-- settle.lua in the same way: it logs the fall at its instant if the identity was online (and a rise cancelling an
-- expiry settled already, past that instant), or else the hidden expiry itself if it is not settled yet (which, for an
-- identity that left, cancels the rise its leave logged).
--
-- An erasure removes the identity from seen, left, hidden and every channel's set of the shard (chans lists them all):
-- nothing else here holds it. The day counters and sketches are aggregates and stay.
-- Returns, per erasure in the order given, 1 if the identity was known (seen within the retention), else 0.

local seen, left, days, chans, hist, hlog, hidden = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local K = 7
local timeout = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local channelPrefix = ARGV[4]

local function ms(number)
  return string.format('%d', number)
end

local maxLog = tonumber(ARGV[5])

local a = 6
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

-- The history starts (again) at this call's first instant, from the counts online then.
local settled = tonumber(redis.call('HGET', hist, 'u'))
if not settled or redis.call('LLEN', hlog) >= maxLog then
  -- The counts just before that instant: of identities whose last heartbeat is at most timeout + 1 ms older.
  settled = tonumber(ARGV[a + 2])
  local from = ms(settled - timeout - 1)
  redis.call('DEL', hist, hlog)
  -- settle.lua will count the implicit expiries of those that left, which they stand for no more.
  local gone = redis.call('ZRANGEBYSCORE', left, from, '+inf', 'WITHSCORES')
  for i = 2, #gone, 2 do redis.call('RPUSH', hlog, ms(tonumber(gone[i]) + timeout + 1) .. ',1,') end
  local fields = {'u', ms(settled), 'c:', redis.call('ZCOUNT', seen, from, '+inf') - redis.call('ZCOUNT', left, from, '+inf')}
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', chans, from, '+inf')) do
    local count = redis.call('ZCOUNT', channelPrefix .. name, from, '+inf')
    if count > 0 then
      fields[#fields + 1] = 'c:' .. name
      fields[#fields + 1] = count
    end
  end
  redis.call('HSET', hist, unpack(fields))
end
local changes = {}
local function change(time, delta, name)
  changes[#changes + 1] = ms(time) .. delta .. name
end

local active, fresh = {}, {}
local latest = 0
local erased = {}
-- Most shards have nobody opted out: their visible heartbeats need not touch the marker.
local anyHidden = redis.call('EXISTS', hidden) == 1
while a <= #ARGV do
  local kind, identity, time = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local now = tonumber(time)
  if now > latest then latest = now end
  if kind == 'b' or kind == 'h' then
    local d, c = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
    local previous = redis.call('ZSCORE', seen, identity)
    -- First heartbeat of the day (or ever): counted once, whatever the number of instances. Past the retention an
    -- identity is forgotten, whether or not the trims removed it yet: it is new again.
    if not previous or tonumber(previous) < dayStart[d] then
      active[d] = (active[d] or 0) + 1
      if not previous or tonumber(previous) < now - retention then fresh[d] = (fresh[d] or 0) + 1 end
      local sketch = KEYS[K + d]
      redis.call('PFADD', sketch, identity)
      redis.call('PEXPIREAT', sketch, dayExpiry[d])
    end
    -- The latest heartbeat decides the opt-out: one older than the last seen (a caller's clock behind) does not.
    if not previous or now >= tonumber(previous) then
      if kind == 'h' then
        redis.call('ZADD', hidden, time, identity)
        anyHidden = true
      elseif anyHidden then
        redis.call('ZREM', hidden, identity)
      end
    end
    redis.call('ZADD', seen, 'GT', time, identity)
    local wasLeft = redis.call('ZREM', left, identity) == 1
    local expiry = previous and tonumber(previous) + timeout + 1
    -- An identity online on the total's count before stays online: no change.
    if previous and expiry >= settled and (wasLeft or now >= expiry) then change(expiry, ',-1,', '') end
    if not previous or wasLeft or now >= expiry then change(now, ',1,', '') end
    if c > 0 then
      local key = KEYS[K + dayCount + c]
      local before = redis.call('ZSCORE', key, identity)
      local channelExpiry = before and tonumber(before) + timeout + 1
      if before and channelExpiry >= settled and now >= channelExpiry then change(channelExpiry, ',-1,', channel[c]) end
      if not before or now >= channelExpiry then change(now, ',1,', channel[c]) end
      redis.call('ZADD', key, 'GT', time, identity)
      redis.call('ZADD', chans, 'GT', time, channel[c])
    end
  elseif kind == 'e' then
    local last = redis.call('ZSCORE', seen, identity)
    local found = 0
    local wasLeft = redis.call('ZREM', left, identity) == 1
    if last then
      last = tonumber(last)
      if last >= now - retention then found = 1 end
      redis.call('ZREM', seen, identity)
      local expiry = last + timeout + 1
      if not wasLeft and now < expiry then
        change(now, ',-1,', '')
        if expiry < settled then change(expiry, ',1,', '') end
      elseif expiry >= settled then
        change(expiry, ',-1,', '')
      end
    end
    redis.call('ZREM', hidden, identity)
    for _, name in ipairs(redis.call('ZRANGE', chans, 0, -1)) do
      local key = channelPrefix .. name
      local before = redis.call('ZSCORE', key, identity)
      if before then
        redis.call('ZREM', key, identity)
        local channelExpiry = tonumber(before) + timeout + 1
        if now < channelExpiry then
          change(now, ',-1,', name)
          if channelExpiry < settled then change(channelExpiry, ',1,', name) end
        elseif channelExpiry >= settled then
          change(channelExpiry, ',-1,', name)
        end
      end
    end
    erased[#erased + 1] = found
  else
    local last = redis.call('ZSCORE', seen, identity)
    -- Only an identity still online can leave; it stays in seen, so it still counts as active.
    if last and tonumber(last) >= now - timeout then
      if redis.call('ZADD', left, last, identity) == 1 then
        -- Offline now; settle.lua will still count its implicit expiry, which this rise cancels.
        change(now, ',-1,', '')
        change(tonumber(last) + timeout + 1, ',1,', '')
      end
      for _, name in ipairs(redis.call('ZRANGEBYSCORE', chans, ms(now - timeout), '+inf')) do
        local key = channelPrefix .. name
        local before = redis.call('ZSCORE', key, identity)
        if before then
          redis.call('ZREM', key, identity)
          local channelExpiry = tonumber(before) + timeout + 1
          if now < channelExpiry then change(now, ',-1,', name)
          elseif channelExpiry >= settled then change(channelExpiry, ',-1,', name) end
        end
      end
    end
  end
  a = a + 5
end

if #changes > 0 then redis.call('RPUSH', hlog, unpack(changes)) end

for d = 1, dayCount do
  if active[d] then redis.call('HINCRBY', days, dayKey[d] .. ':a', active[d]) end
  if fresh[d] then redis.call('HINCRBY', days, dayKey[d] .. ':n', fresh[d]) end
end

-- Housekeeping, bounded by the budget: stale entries go a little at a time, so memory stays bounded
-- by the identities within the retention and the heartbeats within the timeout. An opt-out marker holds the time of its
-- identity's last heartbeat (the latest decides), so the same cutoff takes both together.
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
  local forgotten = ms(latest - retention)
  trim(seen, forgotten)
  trim(hidden, forgotten)
  -- A channel's member stays until its implicit expiry is settled.
  cutoff = ms(math.min(latest - timeout, settled - timeout - 1))
  for c = 1, channelCount do trim(KEYS[K + dayCount + c], cutoff) end
  -- A channel whose latest heartbeat timed out has nobody online: drop it whole.
  local empty = stale(chans, cutoff)
  for _, name in ipairs(empty) do redis.call('DEL', channelPrefix .. name) end
  if #empty > 0 then redis.call('ZREM', chans, unpack(empty)) end
end
return erased
