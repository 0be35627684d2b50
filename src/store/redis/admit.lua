-- Admits channels under the --max-channels limit shared by every instance, and extends their leases.
--
-- KEYS[1]  leases: ZSET channel -> the time (epoch ms) until which it has someone online
-- ARGV[1]  now (epoch ms)
-- ARGV[2]  lease end (epoch ms): now + heartbeat timeout
-- ARGV[3]  the most channels online at once
-- ARGV[4..] channels that have a heartbeat now
--
-- A channel is online while its lease has not ended (the lease follows its latest heartbeat), so
-- admitting is: already online, or fewer than the maximum online. Returns 1 (admitted, lease
-- extended) or 0 (refused) per channel.
local now, leaseEnd, max = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local expired = false
local out = {}
for i = 4, #ARGV do
  local name = ARGV[i]
  local lease = redis.call('ZSCORE', KEYS[1], name)
  local admitted = lease and tonumber(lease) >= now
  if not admitted then
    if not expired then
      redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
      expired = true
    end
    admitted = redis.call('ZCARD', KEYS[1]) < max
  end
  if admitted then
    redis.call('ZADD', KEYS[1], 'GT', leaseEnd, name)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
