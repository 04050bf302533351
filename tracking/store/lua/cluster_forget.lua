-- Redis Cluster: the seen set's half of pruning silent drivers (the GEO
-- index is another slot). A driver seen again meanwhile stays.
--
-- KEYS: 1 seen zset
-- ARGV: 1 server ms: forget drivers last seen before it, then the driver ids
local removed = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
