-- Takes or keeps the lease of the instance that settles the history: one at a time, another takes over once it ends.
--
-- KEYS[1]  leader: STRING, the id of the instance holding the lease, expiring with it
-- ARGV[1]  this instance's id
-- ARGV[2]  lease length (ms)
-- ARGV[3]  1 to take or keep the lease, 0 to give it up
-- Returns 1 while this instance holds the lease, else 0.
local holder = redis.call('GET', KEYS[1])
if ARGV[3] == '0' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
