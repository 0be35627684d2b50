-- Answers a presence lookup for the identities of one shard: each one's last heartbeat and whether it is online.
--
-- KEYS[1]  seen:   ZSET identity -> last heartbeat (epoch ms)
-- KEYS[2]  left:   ZSET identity -> its last heartbeat, for identities that left since that heartbeat
-- KEYS[3]  hidden: ZSET identity -> time of its heartbeat, for identities whose latest heartbeat opted out
-- KEYS[4]  (only when the lookup names a channel) ch:<channel>: ZSET identity -> last heartbeat on that channel
-- ARGV[1]  online cutoff (epoch ms): now - heartbeat timeout, inclusive
-- ARGV[2]  retention cutoff (epoch ms): now - retention; a last heartbeat before it is forgotten, trimmed yet or not
-- ARGV[3..] the identities, in the order asked (repeats allowed)
--
-- One script so each identity's answer comes from one moment, and a lookup of many identities costs one call per shard
-- rather than a few commands per identity. Returns two fields per identity: its last heartbeat (as text; false when
-- never seen, erased, past the retention or opted out) and 1 if online (on the channel, if one is named), else 0.

local seen, left, hidden, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local onlineFrom, keptFrom = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do
  local identity = ARGV[i]
  local last = redis.call('ZSCORE', seen, identity)
  if last and tonumber(last) >= keptFrom and not redis.call('ZSCORE', hidden, identity) then
    -- Online: a heartbeat within the timeout, no leave since, and (for a channel) one on that channel within it.
    local online = tonumber(last) >= onlineFrom and not redis.call('ZSCORE', left, identity)
    if online and channel then
      local onChannel = redis.call('ZSCORE', channel, identity)
      online = onChannel and tonumber(onChannel) >= onlineFrom
    end
    out[#out + 1] = last
    out[#out + 1] = online and 1 or 0
  else
    out[#out + 1] = false
    out[#out + 1] = 0
  end
end
return out
