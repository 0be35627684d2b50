-- Adds webhook deliveries to the outbox (an id there already is left as it is), saves the alert rules' state with
-- them, and keeps the outbox within its bound: past it the oldest go, delivered or failed ones before pending ones.
--
-- KEYS[1]  outbox: HASH id -> the delivery as JSON
-- KEYS[2]  due:    ZSET id -> when its next attempt is due (pending deliveries only)
-- KEYS[3]  age:    ZSET id -> when it was added (every delivery)
-- KEYS[4]  state:  STRING the alert rules' state
-- ARGV[1]  the bound (most deliveries kept)
-- ARGV[2]  now (epoch ms)
-- ARGV[3]  the state to save, or "" to leave it
-- ARGV[4 ..] pairs: id, the delivery as JSON
-- Returns the number of pending deliveries dropped past the bound.
local outbox, due, age, state = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local max = tonumber(ARGV[1])
local now = ARGV[2]
if ARGV[3] ~= '' then redis.call('SET', state, ARGV[3]) end
for i = 4, #ARGV, 2 do
  if redis.call('HSETNX', outbox, ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', due, now, ARGV[i])
    redis.call('ZADD', age, now, ARGV[i])
  end
end
local over = redis.call('ZCARD', age) - max
if over <= 0 then return 0 end
local oldest = redis.call('ZRANGE', age, 0, -1)
local function drop(id)
  redis.call('HDEL', outbox, id)
  redis.call('ZREM', due, id)
  redis.call('ZREM', age, id)
  over = over - 1
end
for _, id in ipairs(oldest) do
  if over <= 0 then break end
  if not redis.call('ZSCORE', due, id) then drop(id) end
end
local dropped = 0
for _, id in ipairs(oldest) do
  if over <= 0 then break end
  if redis.call('ZSCORE', due, id) then
    drop(id)
    dropped = dropped + 1
  end
end
return dropped
