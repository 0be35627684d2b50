-- Records an attempt at a webhook delivery: delivered, failed for good, or due again later.
--
-- KEYS[1]  outbox: HASH id -> the delivery as JSON
-- KEYS[2]  due:    ZSET id -> when its next attempt is due (pending deliveries only)
-- ARGV[1]  the delivery's id
-- ARGV[2]  its status now: pending, delivered or failed
-- ARGV[3]  the HTTP status of the attempt, or ""
-- ARGV[4]  why it failed without an HTTP answer, or ""
-- ARGV[5]  when the next attempt is due (pending), or ""
-- ARGV[6]  now (epoch ms)
-- Returns 1, or 0 when the delivery is not pending (gone past the bound, or recorded already).
local outbox, due = KEYS[1], KEYS[2]
local id = ARGV[1]
local saved = redis.call('HGET', outbox, id)
if not saved then return 0 end
local delivery = cjson.decode(saved)
if delivery.status ~= 'pending' then return 0 end
delivery.status = ARGV[2]
delivery.attempts = delivery.attempts + 1
delivery.lastStatus = ARGV[3] ~= '' and tonumber(ARGV[3]) or cjson.null
delivery.lastError = ARGV[4] ~= '' and ARGV[4] or cjson.null
if ARGV[2] == 'pending' then
  delivery.nextAttemptMs = tonumber(ARGV[5])
  redis.call('ZADD', due, ARGV[5], id)
else
  delivery.nextAttemptMs = cjson.null
  delivery.doneMs = tonumber(ARGV[6])
  redis.call('ZREM', due, id)
end
redis.call('HSET', outbox, id, cjson.encode(delivery))
return 1
