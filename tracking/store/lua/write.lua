-- One atomic write of everything a point (or an action, or a tick) changed.
-- Either all of it is stored or, on a compare-and-set conflict, none of it.
--
-- KEYS: 1 trip hash, 2 events stream, 3 trail list, 4 deadlines zset,
--       5 driver hash, 6 geo zset, 7 drivers-seen zset
-- ARGV: 1 expected trip rev ('' = no trip part), 2 state json, 3 route json ('' = unchanged),
--       4 stream maxlen, 5 trip channel, 6 trip id, 7 deadline ms ('' = none),
--       8 driver json ('' = no driver part), 9 driver id, 10 driver last_seq,
--       11 lon, 12 lat ('' = no geo update), 13 ttl s, 14 n events, 15 n trail,
--       16 fleet channel, 17 fleet update json ('' = none),
--       18 server ms of the driver's point ('' = not a sign of life),
--       19 lowest seq of the driver's points ('0' = no check),
--       then n events as (seq, payload) pairs, then n trail entries.
-- The fleet update is published with the driver part when that part is
-- written with a geo update; with no driver part (an action, a tick, an
-- assignment), whenever the trip part is written.
-- Returns {1} when written, {0, current_rev} on conflict.
local ttl = tonumber(ARGV[13])
if ARGV[8] ~= '' and ARGV[19] ~= '0' then
  -- Points this driver has stored already (sent again on a second socket,
  -- or a write retried after its reply was lost) must not be stored twice:
  -- a conflict, so that the caller reloads the driver and admits them again.
  local stored = tonumber(redis.call('HGET', KEYS[5], 'last_seq') or '0')
  if stored >= tonumber(ARGV[19]) then
    return {0, redis.call('HGET', KEYS[1], 'rev') or '0'}
  end
end
if ARGV[1] ~= '' then
  local rev = redis.call('HGET', KEYS[1], 'rev') or '0'
  if rev ~= ARGV[1] then
    return {0, rev}
  end
  redis.call('HSET', KEYS[1], 'rev', tostring(tonumber(rev) + 1), 'state', ARGV[2])
  if ARGV[3] ~= '' then
    redis.call('HSET', KEYS[1], 'route', ARGV[3])
  end
  local n_events = tonumber(ARGV[14])
  local n_trail = tonumber(ARGV[15])
  local base = 19
  for i = 1, n_events do
    local seq = ARGV[base + 2 * i - 1]
    local payload = ARGV[base + 2 * i]
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 'e', payload)
    redis.call('PUBLISH', ARGV[5], payload)
  end
  base = base + 2 * n_events
  for i = 1, n_trail do
    redis.call('RPUSH', KEYS[3], ARGV[base + i])
  end
  if ARGV[7] == '' then
    redis.call('ZREM', KEYS[4], ARGV[6])
  else
    redis.call('ZADD', KEYS[4], ARGV[7], ARGV[6])
  end
  redis.call('EXPIRE', KEYS[1], ttl)
  if n_events > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
  if n_trail > 0 then redis.call('EXPIRE', KEYS[3], ttl) end
end
if ARGV[8] ~= '' then
  -- Two sessions of one driver (a reconnect overlapping the old socket)
  -- must never move the acknowledged seq backwards.
  local stored = tonumber(redis.call('HGET', KEYS[5], 'last_seq') or '0')
  if tonumber(ARGV[10]) >= stored then
    redis.call('HSET', KEYS[5], 'last_seq', ARGV[10], 'state', ARGV[8])
    redis.call('EXPIRE', KEYS[5], ttl)
    if ARGV[18] ~= '' then
      local seen_ms = tonumber(ARGV[18])
      redis.call('ZADD', KEYS[7], seen_ms, ARGV[9])
    end
    if ARGV[12] ~= '' then
      redis.call('GEOADD', KEYS[6], ARGV[11], ARGV[12], ARGV[9])
      if ARGV[17] ~= '' then
        redis.call('PUBLISH', ARGV[16], ARGV[17])
      end
    end
  end
elseif ARGV[17] ~= '' then
  -- A trip's status changed without a point: the fleet sees it now, not at
  -- the driver's next fix. (A compare-and-set conflict has returned above.)
  redis.call('PUBLISH', ARGV[16], ARGV[17])
end
return {1}
