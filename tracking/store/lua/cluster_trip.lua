-- Redis Cluster: the trip's part of a write, on the trip's own slot.
-- Atomic with a compare-and-set on the trip's rev, like write.lua; the
-- driver's and the global indexes' parts follow as separate calls once this
-- has succeeded (store/cluster.py). Resent points are not stored twice: the
-- trip's state records the last driver seq applied (TripState.driver_seq),
-- and a write prepared from an older state fails the compare-and-set.
--
-- KEYS: 1 trip hash, 2 events stream, 3 trail list
-- ARGV: 1 expected rev, 2 state json, 3 route json ('' = unchanged),
--       4 stream maxlen, 5 trip shard channel, 6 ttl s, 7 n events, 8 n trail,
--       then n events as (seq, payload) pairs, then n trail entries.
-- Returns {1} when written, {0, current_rev} on conflict.
local rev = redis.call('HGET', KEYS[1], 'rev') or '0'
if rev ~= ARGV[1] then
  return {0, rev}
end
redis.call('HSET', KEYS[1], 'rev', tostring(tonumber(rev) + 1), 'state', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'route', ARGV[3])
end
local ttl = tonumber(ARGV[6])
local n_events = tonumber(ARGV[7])
local n_trail = tonumber(ARGV[8])
local base = 8
for i = 1, n_events do
  local seq = ARGV[base + 2 * i - 1]
  local payload = ARGV[base + 2 * i]
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 'e', payload)
  -- Sharded pub/sub: only the shard that holds the trip carries its events.
  redis.call('SPUBLISH', ARGV[5], payload)
end
base = base + 2 * n_events
for i = 1, n_trail do
  redis.call('RPUSH', KEYS[3], ARGV[base + i])
end
redis.call('EXPIRE', KEYS[1], ttl)
if n_events > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
if n_trail > 0 then redis.call('EXPIRE', KEYS[3], ttl) end
return {1}
