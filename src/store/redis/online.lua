-- Counts the identities of one shard online at a moment: last heartbeat at or after the cutoff, not left since.
--
-- KEYS[1]  seen: ZSET identity -> last heartbeat (epoch ms)
-- KEYS[2]  left: ZSET identity -> last heartbeat, of identities that left since it
-- ARGV[1]  cutoff (epoch ms): now - heartbeat timeout, inclusive
--
-- One script so both counts come from the same moment: a heartbeat between two separate ZCOUNTs
-- could otherwise be counted in one and not the other.
return redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf') - redis.call('ZCOUNT', KEYS[2], ARGV[1], '+inf')
