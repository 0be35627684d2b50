-- Settles one shard's history up to an instant: hands over the changes of its online counts before it, atomically.
--
-- KEYS[1]  seen, KEYS[2] chans, KEYS[3] hist, KEYS[4] hlog (as in record.lua)
-- ARGV[1]  heartbeat timeout (ms)
-- ARGV[2]  settle until this instant (epoch ms)
-- ARGV[3]  prefix of this shard's channel keys
--
-- The changes in [u, until) are the logged ones (record.lua) and the implicit expiries: a fall of 1 at last
-- heartbeat + timeout + 1 ms for every member of seen and of each channel's set whose expiry falls in the range.
-- Returns {} when the shard has no history yet, else {u, counts, changes}: counts as a flat list of channel and
-- count ("" the total) just before u, changes as a flat list of instant, delta, channel. The shard's counts then
-- move to `until`, which becomes its new u.

local seen, chans, hist, hlog = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local timeout = tonumber(ARGV[1])
local untilMs = tonumber(ARGV[2])
local channelPrefix = ARGV[3]

local function ms(number)
  return string.format('%d', number)
end

local state = redis.call('HGETALL', hist)
if #state == 0 then return {} end
local settled
local counts, before = {}, {}
for i = 1, #state, 2 do
  local field = state[i]
  if field == 'u' then
    settled = tonumber(state[i + 1])
  else
    local name = string.sub(field, 3)
    counts[name] = tonumber(state[i + 1])
    before[#before + 1] = name
    before[#before + 1] = counts[name]
  end
end
-- A history starting again (after an import) has counts but no instant yet: record.lua gives it one.
if not settled then return {} end
if untilMs <= settled then return {ms(settled), before, {}} end

local changes = {}
local function add(time, delta, name)
  changes[#changes + 1] = time
  changes[#changes + 1] = delta
  changes[#changes + 1] = name
  counts[name] = (counts[name] or 0) + delta
end

-- The logged changes before `until` are handed over; later ones (from a caller whose clock is ahead) wait.
local logged = redis.call('LRANGE', hlog, 0, -1)
local later = {}
for _, entry in ipairs(logged) do
  local time, delta, name = string.match(entry, '^(%-?%d+),(%-?%d+),(.*)$')
  if tonumber(time) < untilMs then add(time, tonumber(delta), name) else later[#later + 1] = entry end
end
redis.call('DEL', hlog)
if #later > 0 then redis.call('RPUSH', hlog, unpack(later)) end

-- Implicit expiries: last heartbeat s with s + timeout + 1 in [u, until).
local from, to = ms(settled - timeout - 1), '(' .. ms(untilMs - timeout - 1)
local function expiries(key, name)
  local members = redis.call('ZRANGEBYSCORE', key, from, to, 'WITHSCORES')
  for i = 2, #members, 2 do add(ms(tonumber(members[i]) + timeout + 1), -1, name) end
end
expiries(seen, '')
for _, name in ipairs(redis.call('ZRANGEBYSCORE', chans, from, '+inf')) do expiries(channelPrefix .. name, name) end

local fields = {'u', ms(untilMs)}
local empty = {}
for name, count in pairs(counts) do
  if count == 0 then
    empty[#empty + 1] = 'c:' .. name
  else
    fields[#fields + 1] = 'c:' .. name
    fields[#fields + 1] = count
  end
end
redis.call('HSET', hist, unpack(fields))
if #empty > 0 then redis.call('HDEL', hist, unpack(empty)) end
return {ms(settled), before, changes}
