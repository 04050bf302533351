-- Redis Cluster: the driver's part of a write, on the driver's own slot.
--
-- KEYS: 1 driver hash
-- ARGV: 1 driver json, 2 its last_seq, 3 ttl s,
--       4 lowest seq of the points in this write ('0' = no check)
-- Returns 1 when written; 0 when the stored last_seq is newer (two sessions
-- of one driver overlapping: the acknowledged seq never moves back);
-- -1 when the points are stored already (checked only for a write with no
-- trip part; with one, the trip's compare-and-set has decided).
local stored = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0')
if ARGV[4] ~= '0' and stored >= tonumber(ARGV[4]) then
  return -1
end
if tonumber(ARGV[2]) < stored then
  return 0
end
redis.call('HSET', KEYS[1], 'last_seq', ARGV[2], 'state', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
