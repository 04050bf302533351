-- Redis Cluster: a trip's entry in the global deadlines set, written after
-- the trip's own part (another slot). Writes of one trip from several
-- gateways may arrive here out of order: the entry of the highest trip rev
-- wins, so that an older write cannot put back a later deadline.
--
-- KEYS: 1 deadlines zset, 2 hash trip id -> rev of its entry
-- ARGV: 1 trip id, 2 trip rev, 3 deadline ms ('' = none)
local current = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) < current then
  return 0
end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 1
