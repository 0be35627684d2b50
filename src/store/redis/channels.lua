-- The channels of one shard with identities online, and how many: name, count, name, count, ...
--
-- KEYS[1]  chans: ZSET channel -> latest heartbeat on it in this shard (epoch ms)
-- ARGV[1]  cutoff (epoch ms): now - heartbeat timeout, inclusive
-- ARGV[2]  prefix of this shard's channel keys ("{os:3}:ch:"); they share KEYS[1]'s hash tag and slot
--
-- At most --max-channels channels are online at once, so this reads a bounded number of keys.
local out = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')) do
  local online = redis.call('ZCOUNT', ARGV[2] .. name, ARGV[1], '+inf')
  if online > 0 then
    out[#out + 1] = name
    out[#out + 1] = online
  end
end
return out
